defmodule Fenix.Socket do
  # The defaults are the engine's (written once, in native/fenix_core), read here so
  # that the manual below states them.
  @defaults Fenix.Native.endpoint_defaults().socket

  @moduledoc """
  A socket: the connection-level module that authenticates clients and routes topics
  to channels. It mirrors `Phoenix.Socket`, so moving a Phoenix socket to Fenix is a
  rename.

      defmodule MyAppWeb.UserSocket do
        use Fenix.Socket

        channel "room:*", MyAppWeb.RoomChannel

        @impl true
        def connect(%{"token" => token}, socket, _connect_info) do
          case MyApp.Accounts.verify(token) do
            {:ok, user_id} -> {:ok, assign(socket, :user_id, user_id)}
            :error -> :error
          end
        end

        def connect(_params, _socket, _connect_info), do: :error

        @impl true
        def id(socket), do: "users_socket:\#{socket.assigns.user_id}"
      end

  Mount it in an endpoint with `socket "/socket", MyAppWeb.UserSocket`.

  ## Lifecycle

  1. A client opens `<path>/websocket?<params>` (or a long-poll session, see "Long-poll"
     below). The engine (Rust) parses the upgrade
     and asks the endpoint, which runs `c:connect/3` in a short-lived process.
  2. `{:ok, socket}` accepts: the upgrade is answered `101` and `c:id/1` names the
     socket. `:error` or `{:error, reason}` refuses: the upgrade is answered `403`.
  3. Heartbeats are answered by the engine without reaching Elixir.
  4. Each `phx_join` whose topic matches a `channel/3` route starts one channel
     process (see `Fenix.Channel`) with a copy of the socket's assigns.
  5. Broadcasting `"disconnect"` to the socket's id closes every connection with that
     id (close code 1001, so clients reconnect):

         MyAppWeb.Endpoint.broadcast("users_socket:" <> user_id, "disconnect", %{})

  ## Connect info

  The third argument of `c:connect/3` holds what the socket asks for with the
  `connect_info:` option of `Fenix.Endpoint.socket/3`, as in Phoenix (nothing is asked
  for by default: `%{}`):

      socket "/socket", MyAppWeb.UserSocket,
        websocket: [connect_info: [:peer_data, :x_headers, :auth_token, region: "eu"]]

    * `:peer_data` - `%{address: ip_tuple, port: port}`
    * `:uri` - the request's `URI`
    * `:x_headers` - `[{name, value}]` of the `x-*` request headers
    * `:trace_context_headers` - `[{name, value}]` of `traceparent` and `tracestate`
    * `:sec_websocket_headers` - `[{name, value}]` of the `sec-websocket-*` headers
    * `:user_agent` - the `user-agent` header, or `nil`
    * `:auth_token` - the token a client sends in `Sec-WebSocket-Protocol` (the
      `authToken` option of the `phoenix` JavaScript client), or `nil`
    * `key: value` - any of the application's own, given as is

  Header names are lowercase. `{:session, _}` is refused: Fenix has no Plug sessions.

  ## Origin checks

  As in Phoenix, a browser's upgrade is refused with 403 (and logged) when its
  `Origin` is not allowed, before `c:connect/3` runs; a request without `Origin` (not
  a browser) is allowed. `check_origin:` is given to the socket's `websocket:` options
  or to the endpoint's config (the socket's wins), and defaults to `true`:

    * `true` - the origin's host must be the endpoint's `url: [host: ...]`
      (`"localhost"` unless configured);
    * `false` - any origin;
    * a list - `["https://example.com", "//another.com:888", "//*.example.com"]`: the
      parts an entry names (scheme, host, port) must match, `*.` being the host and its
      subdomains;
    * `:conn` - the origin must be the request's own scheme, host and port;
    * `{module, function, args}` - `apply(module, function, [origin_uri | args])` says.

  ## Socket options

  Given as `websocket: [...]` to `Fenix.Endpoint.socket/3`:

    * `:timeout` - close a connection after this many ms without an inbound frame.
      Default `#{@defaults.timeout}`.
    * `:max_frame_size` - the largest inbound message in bytes; larger ones close the
      connection (1009). Default `#{@defaults.max_frame_size}`.
    * `:max_channels` - the most channels one connection may join; further joins get
      `{"reason": "too many channels joined"}`. Default `#{@defaults.max_channels}`.
    * `:outbox_capacity` - the most frames queued for one client; a client that falls
      further behind is disconnected. Default `#{@defaults.outbox_capacity}`.
    * `:outbox_capacity_bytes` - the most bytes queued for one client; a client that
      falls further behind is disconnected (one larger frame is still queued when
      nothing else is). Default `#{@defaults.outbox_capacity_bytes}`.
    * `:max_unhandled_messages` - the most client messages of one connection that its
      channel processes have been handed but not handled yet; the connection is not
      read while it has that many, so that TCP slows a flooding client down.
      Default `#{@defaults.max_unhandled_messages}`.
    * `:max_unhandled_bytes` - the same bound in bytes (wire size of the messages).
      Default `#{@defaults.max_unhandled_bytes}`.
    * `:connect_timeout` - ms that `c:connect/3` may take before the upgrade fails.
      Default `#{@defaults.connect_timeout}`.
    * `:frame_timeout` - ms a frame may take from its first byte to its last; a client
      that starts one and stalls is closed with 1008. Default `#{@defaults.frame_timeout}`
      (a 1 MiB frame needs about 100 KiB/s: raise it for big frames over slow links).
    * `:slow_reader_timeout` - ms the client's socket may take nothing while there is
      something to write to it; a client that stays behind that long (it does not read,
      or its network is gone) is dropped, logged with a count of such drops. A client
      that falls behind by more than `:outbox_capacity` or `:outbox_capacity_bytes` is
      dropped at once. Default `#{@defaults.slow_reader_timeout}`.
    * `:max_messages_per_second` - the most messages a second a client may send
      (heartbeats and joins included), with a burst of as many; beyond it the
      connection is closed with 1008 and the reason logged. Default: no limit, since
      `:max_unhandled_messages` already makes a flooding client cost the others
      nothing; set it to close such clients rather than serve them.
    * `:max_joins_per_second` - the same for joins (each starts a channel process).
      Default `#{@defaults.max_joins_per_second}`, well above a page that joins all its
      channels at once.

  Each is a positive integer; an option left out gets its default. The same options
  (but `:max_channels` and `:max_joins_per_second`) bound the connections of a
  `Fenix.Socket.Transport`, whose messages count against the inbound bounds as a
  channel's do.

  ## Long-poll

  `longpoll: true` (or `longpoll: [window_ms: ..., max_body_size: ...]`) given to
  `Fenix.Endpoint.socket/3` also serves the socket at `<path>/longpoll`, Phoenix 1.8's
  long-poll protocol: phoenix.js's `LongPoll` transport, and the fallback its
  `longPollFallbackMs` option makes when a WebSocket cannot connect. It is off by
  default. A long-poll session is one more kind of connection: the same `c:connect/3`
  (with `socket.transport == :longpoll`, the auth token from the `X-Phoenix-AuthToken`
  header), the same channels, broadcasts, presence and `disconnect`, the same
  `websocket:` limits, and the endpoint's connection limits count it.

    * A `GET` without the token of a live session opens one: `{"status": 410,
      "token": ..., "messages": []}` (`403` if `c:connect/3` refuses). The token is
      signed with the endpoint's `:secret_key_base` when it has one (`Fenix.Token`),
      else 128 random bits; the engine looks sessions up by it alone (it is
      unguessable), without calling Elixir.
    * A `GET` with the token (`token` param or `x-phoenix-longpoll-token` header)
      waits up to the window for what the channels sent: `200` with the messages, or
      `204`. A `disconnect` or a drain ends the session: the polls after it get `410`
      and the client connects anew.
    * A `POST` with the token publishes one message, or with `Content-Type:
      application/x-ndjson` a batch of at most 100 lines (JSON, or base64 of a binary
      message). Messages wait for the session's inbound credit as a WebSocket's do;
      a batch its channels do not take within the window gets `408`. A malformed
      message ends the session (`400`).
    * `OPTIONS` answers the CORS preflight.

  The HTTP status is always `200` (the real one is in the JSON body), with
  `cache-control: no-store` and `access-control-allow-origin: *`, and the HTTP
  connection is kept alive for the next poll; a session beyond the connection limits
  gets an HTTP `503`. Origins are checked when a session opens. A session that nobody
  polls for 1.5 windows ends, and its channels are told as when a WebSocket closes; one
  that falls behind by the outbox bounds ends at its next poll.

    * `:window_ms` - how long a poll waits for messages. Default
      `#{@defaults.longpoll.window_ms}`, as Phoenix.
    * `:max_body_size` - the largest `POST` body, in bytes; a larger one is answered
      HTTP `413`. Default `#{@defaults.longpoll.max_body_size}`. Each message is bounded by
      `:max_frame_size` too.

  ## Fields

    * `:assigns` - the map set with `assign/3`
    * `:endpoint` - the endpoint module
    * `:handler` - the socket module
    * `:id` - the socket id from `c:id/1`, or `nil`
    * `:serializer` - `:v1` or `:v2`: the wire format the engine picked from the
      client's `vsn` (a missing `vsn` means `:v1`)
    * `:transport` - `:websocket` or `:longpoll`, as the client connected
    * in a channel: `:channel`, `:channel_pid`, `:topic`, `:join_ref`, `:joined`, and
      `:ref` (the ref of the message being handled)

  `:join_ref` and `:ref` are whatever JSON value the client sent, decoded as Phoenix
  decodes it: the `phoenix` JavaScript client sends strings (`"3"`), many other clients
  send numbers (`3`, an integer here), and `null` is `nil`. Replies carry them back to
  the client as they came.
  """

  @typedoc "A client's `ref` or `join_ref`: any JSON value (`nil` when the client sent none or `null`)."
  @type client_ref :: String.t() | integer() | float() | boolean() | map() | list() | nil

  @type t :: %__MODULE__{
          assigns: map(),
          channel: module() | nil,
          channel_pid: pid() | nil,
          endpoint: module() | nil,
          handler: module() | nil,
          id: String.t() | nil,
          joined: boolean(),
          join_ref: client_ref(),
          private: map(),
          ref: client_ref(),
          serializer: :v1 | :v2 | nil,
          topic: String.t() | nil,
          transport: :websocket | :longpoll,
          transport_pid: pid() | nil,
          conn_id: non_neg_integer() | nil,
          channel_ref: reference() | nil
        }

  defstruct assigns: %{},
            channel: nil,
            channel_pid: nil,
            endpoint: nil,
            handler: nil,
            id: nil,
            joined: false,
            join_ref: nil,
            private: %{},
            ref: nil,
            serializer: nil,
            topic: nil,
            transport: :websocket,
            transport_pid: nil,
            conn_id: nil,
            channel_ref: nil

  @doc """
  Authenticates a client. `params` are the connect query parameters.

  Return `{:ok, socket}` to accept, `:error` or `{:error, reason}` to refuse (HTTP 403).

      def connect(%{"user_id" => id}, socket, _connect_info),
        do: {:ok, assign(socket, :user_id, id)}
  """
  @callback connect(params :: map(), t(), connect_info :: map()) ::
              {:ok, t()} | {:error, term()} | :error

  @doc ~S"""
  Names the socket, so that all of one user's connections can be found and
  disconnected with a `"disconnect"` broadcast. `nil` for an anonymous socket.

      def id(socket), do: "users_socket:#{socket.assigns.user_id}"
  """
  @callback id(t()) :: String.t() | nil

  @doc false
  defmacro __using__(_opts) do
    quote do
      @behaviour Fenix.Socket
      import Fenix.Socket, only: [channel: 2, channel: 3, assign: 3, assign: 2]
      Module.register_attribute(__MODULE__, :fenix_channels, accumulate: true)
      @before_compile Fenix.Socket

      @impl Fenix.Socket
      def id(_socket), do: nil

      defoverridable id: 1
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    routes = env.module |> Module.get_attribute(:fenix_channels) |> Enum.reverse()

    clauses =
      for {topic_pattern, module, opts} <- routes do
        channel_clause(topic_pattern, module, opts)
      end

    quote do
      @doc false
      unquote(clauses)
      def __channel__(_topic), do: nil
    end
  end

  defp channel_clause(pattern, module, opts) do
    case String.split(pattern, "*") do
      [exact] ->
        quote do
          def __channel__(unquote(exact)), do: {unquote(module), unquote(Macro.escape(opts))}
        end

      [prefix, ""] ->
        quote do
          def __channel__(unquote(prefix) <> _), do: {unquote(module), unquote(Macro.escape(opts))}
        end
    end
  end

  @doc """
  Routes topics matching `topic_pattern` to `module`, a `Fenix.Channel`.

  The pattern is an exact topic, or a prefix ending in `*`:

      channel "room:*", MyAppWeb.RoomChannel
      channel "notifications", MyAppWeb.NotificationChannel

  Options:

    * `:assigns` - a map merged into the socket's assigns for this channel's joins:

          channel "admin:*", MyAppWeb.AdminChannel, assigns: %{admin_area: true}
  """
  defmacro channel(topic_pattern, module, opts \\ []) do
    module = Macro.expand(module, %{__CALLER__ | function: {:channel, 3}})

    if Keyword.keyword?(opts) do
      for {key, _} <- opts, key != :assigns do
        raise ArgumentError, "unknown channel/3 option #{inspect(key)}, the known one is :assigns"
      end
    end

    unless is_binary(topic_pattern) do
      raise ArgumentError, "channel topic pattern must be a string, got: #{Macro.to_string(topic_pattern)}"
    end

    case String.split(topic_pattern, "*") do
      [_exact] ->
        :ok

      [_prefix, ""] ->
        :ok

      _ ->
        raise ArgumentError,
              "channels using splat patterns must end with *, got: #{inspect(topic_pattern)}"
    end

    quote do
      @fenix_channels {unquote(topic_pattern), unquote(module), unquote(opts)}
    end
  end

  @doc """
  Adds `key` with `value` to the socket's assigns.

      assign(socket, :user_id, 42)
  """
  @spec assign(t(), atom(), term()) :: t()
  def assign(%__MODULE__{} = socket, key, value) when is_atom(key) do
    %{socket | assigns: Map.put(socket.assigns, key, value)}
  end

  @doc """
  Merges a keyword list or map into the socket's assigns.
  """
  @spec assign(t(), map() | keyword()) :: t()
  def assign(%__MODULE__{} = socket, attrs) when is_map(attrs) or is_list(attrs) do
    %{socket | assigns: Enum.into(attrs, socket.assigns)}
  end

  @doc false
  # Runs the handler's connect/3 and id/1. Called in a process of its own.
  @spec __connect__(module(), module(), map(), map(), :v1 | :v2, :websocket | :longpoll) ::
          {:ok, t()} | :error | {:error, term()}
  def __connect__(endpoint, handler, params, connect_info, serializer, transport \\ :websocket) do
    socket = %__MODULE__{endpoint: endpoint, handler: handler, serializer: serializer, transport: transport}

    case handler.connect(params, socket, connect_info) do
      {:ok, %__MODULE__{} = socket} ->
        case handler.id(socket) do
          id when is_binary(id) or is_nil(id) ->
            {:ok, %{socket | id: id}}

          invalid ->
            raise ArgumentError,
                  "#{inspect(handler)}.id/1 returned invalid identifier #{inspect(invalid)}. " <>
                    "Expected nil or a string."
        end

      :error ->
        :error

      {:error, _reason} = error ->
        error

      invalid ->
        raise ArgumentError,
              "#{inspect(handler)}.connect/3 returned invalid value #{inspect(invalid)}. " <>
                "Expected {:ok, socket}, {:error, reason} or :error"
    end
  end
end
