defmodule Fenix.Endpoint do
  # The defaults are the engine's (written once, in native/fenix_core), read here so
  # that the manual below states them.
  @defaults Fenix.Native.endpoint_defaults()

  @moduledoc """
  An endpoint: the server that sockets are mounted on, and the entry point for
  broadcasts. It mirrors the parts of `Phoenix.Endpoint` that channels use.

      defmodule MyAppWeb.Endpoint do
        use Fenix.Endpoint, otp_app: :my_app

        socket "/socket", MyAppWeb.UserSocket, websocket: [timeout: 45_000]
      end

  Add it to the application's supervision tree:

      children = [MyAppWeb.Endpoint]

  and configure it like a Phoenix endpoint:

      config :my_app, MyAppWeb.Endpoint, http: [ip: {127, 0, 0, 1}, port: 4000]

  Options given to `start_link/1` (or in the child spec, `{MyAppWeb.Endpoint, http: [port: 0]}`)
  are merged over the application config.

  ## Options

    * `:http` - `[ip: tuple | string, port: integer, head_timeout: ms]`. Default
      `[ip: #{inspect(@defaults.ip)}, port: #{@defaults.port}, head_timeout: #{@defaults.head_timeout}]`;
      port `0` picks a free port (see `c:port/0`), which the endpoint binds again when it
      restarts after a crash. A TCP connection that has not sent its whole request head
      (request line and headers) `head_timeout` ms after it opened is answered 408 and
      closed: one that sends nothing, or stops half-way, holds nothing for long. Also
      `max_connections` (default #{@defaults.max_connections}) and
      `max_connections_per_address` (connections from one remote IP address, default
      #{@defaults.max_connections_per_address}): an upgrade beyond either is answered 503
      before `connect/3` runs. Behind a proxy that connects from one address, raise the
      latter. `http: false` (or `https:` given alone) starts no plain listener.
    * `:https` - `[ip:, port:, certfile:, keyfile:, cipher_suite:, otp_app:]`, as Phoenix
      takes it: a TLS listener that serves the same sockets as `:http` (both may be
      given), so that pages served over https connect with `wss://`. Default port
      #{@defaults.https_port} (Plug.Cowboy's and Bandit's); the limits above may be given
      here too (they hold for both listeners; those in `:http` win). See "HTTPS" below.
    * `:server` - `false` keeps the endpoint from serving its `:http` and `:https`
      addresses, as Phoenix's `server: false` in a generated `config/test.exs`: the
      engine still runs (broadcasts, presence, `Fenix.ChannelTest`), listening on a free
      loopback port only. Default `true`.
    * `:static` - `[from: dir]`: serve the files of `dir` for GET requests that no
      socket matches (`/` serves `index.html`). Default: none; anything else answers 404.
    * `:engine_threads` - worker threads of the Rust engine, shared by every endpoint
      of the VM and fixed by the first one started. Default `#{@defaults.engine_threads}`
      (one per core). Besides them, one intake thread at the lowest OS priority
      (nice 19) accepts connections, runs handshakes and HTTP requests (long-poll
      included) and each WebSocket connection's first second, and ends the
      connections whose clients vanished: a storm of connections that come and go
      then takes only the time the established ones leave.
    * `:tune_allocator` - keep freed `malloc` memory for reuse instead of giving it back
      to the system at once: glibc's trim threshold goes from 128 KiB to 64 MiB and its
      top pad to 16 MiB (`mallopt`). Default `#{@defaults.tune_allocator}`: without it, every
      fan-out faults in again the pages the previous one gave back, and a first fan-out
      to 10,000 subscribers spent about a third of the server's CPU in the kernel's
      `clear_page`. The setting is process-wide: it changes `malloc` for every NIF and
      driver of the VM (the BEAM's own allocators are not affected), is applied when the
      first endpoint that asks for it starts, and stays until the VM exits. Give `false`
      to every endpoint to keep glibc's defaults.
    * `:pubsub_server` - the name of a `Fenix.PubSub` server, started before the
      endpoint (`{Fenix.PubSub, name: MyApp.PubSub}`), as Phoenix's endpoint takes it:
      the endpoint's broadcasts and presence diffs then reach the processes subscribed
      to the topic there (`c:subscribe/2`), and `Fenix.PubSub.broadcast/3` to a topic
      reaches the endpoint's channel processes on it. Default: none (broadcasts reach
      the sockets only, and `c:subscribe/2` raises).
    * `:secret_key_base` - the secret that `Fenix.Token` derives its keys from when
      given this endpoint or one of its sockets. Default: none. Use at least 64 random
      bytes, kept out of the source, for example
      `secret_key_base: System.fetch_env!("SECRET_KEY_BASE")`.

  `c:config/2` reads these options back.

  ## HTTPS

      config :my_app, MyAppWeb.Endpoint,
        https: [
          port: 4001,
          cipher_suite: :strong,
          certfile: "priv/cert/selfsigned.pem",
          keyfile: "priv/cert/selfsigned_key.pem"
        ]

  `certfile` is the PEM certificate chain (the server's certificate first), `keyfile`
  its PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted). A relative path is
  relative to the directory of `otp_app` (default: the endpoint's), as Plug.SSL has
  it, so `mix phx.gen.cert`'s files work as they are. A file that does not exist, or
  an unknown `cipher_suite`, raises `ArgumentError` in `start_link/1`; a file that
  cannot be used (no certificate in it, a key that does not match the certificate)
  makes the endpoint fail to start with `{:endpoint_start_failed, {:tls, message}}`.

  The engine serves TLS itself, with rustls (the `ring` provider), and speaks HTTP/1.1
  (ALPN `http/1.1`). `cipher_suite` maps Plug's presets to what rustls offers (rustls
  has no DHE or CBC suites and no TLS 1.0/1.1; its `ring` provider no P-521 curve),
  the server's order preferred (Plug's `honor_cipher_order`):

    * `:strong` - TLS 1.3 only: TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,
      TLS_AES_128_GCM_SHA256; key exchange X25519, P-256, P-384.
    * `:compatible` - TLS 1.3 and 1.2: the above, then ECDHE-ECDSA-AES256-GCM-SHA384,
      ECDHE-RSA-AES256-GCM-SHA384, ECDHE-ECDSA-CHACHA20-POLY1305,
      ECDHE-RSA-CHACHA20-POLY1305, ECDHE-ECDSA-AES128-GCM-SHA256,
      ECDHE-RSA-AES128-GCM-SHA256 (Plug's list without its two DHE-RSA suites).
    * left out - rustls's defaults: TLS 1.3 and 1.2, the same nine suites.

  The handshake runs in the connection's own task and must finish, together with the
  request head, within `head_timeout`: a client that stalls in it or sends something
  other than TLS is closed by then and holds nothing else. TLS connections count
  toward `max_connections` and `max_connections_per_address` like plain ones. The
  `:uri` connect info of a TLS connection has the scheme `"https"`, and
  `check_origin: :conn` compares origins with it.

  Each socket's `websocket:` options are listed in `Fenix.Socket`.

  ## Supervision

  The endpoint is a supervisor. Among its processes are the supervisor of its channel
  processes (and of the connection processes of its `Fenix.Socket.Transport` sockets),
  the child specs of those transport modules (`child_spec/1`, under a supervisor of
  their own, so that one that crashes restarts alone), and a dispatcher that owns the
  engine's server and turns its connect and join requests into work. The server lives exactly as long as its dispatcher: when the
  dispatcher exits for any reason (a crash, a kill, the endpoint stopping or being
  killed), the server stops accepting, releases its port, answers pending upgrades
  with 503, and closes every connection with code 1012 (Service Restart); each of their
  channel processes stops with `{:shutdown, :closed}`. Clients reconnect and rejoin by
  themselves (the `phoenix` client does), to the dispatcher's successor, which binds
  the same port. No connection is left waiting for a process that is gone.

  An orderly shutdown (the application stopping, `Supervisor.terminate_child/2`) first
  drains: the endpoint stops accepting and closes each socket's connections in batches,
  as its `drainer:` option says (see `socket/3`), so that clients move to another server
  gradually; their channels get `terminate/2`.

  ## Broadcasting

      MyAppWeb.Endpoint.broadcast("room:lobby", "new_msg", %{body: "hi"})

  A broadcast is encoded once per wire format and the same bytes are queued to every
  subscriber; channels that `intercept` the event get it in `handle_out/3` instead.
  Processes subscribed to the topic on the endpoint's `:pubsub_server`
  (`MyAppWeb.Endpoint.subscribe("room:lobby")`) get each broadcast as a
  `%Fenix.Socket.Broadcast{}`, sent once to each, in the call.
  Broadcasts to one topic reach every subscriber in the order they were made, and
  what one process sends (broadcasts, pushes, replies) reaches each client in the
  order it was sent. The call itself only encodes and queues: the fan-out runs in the
  engine, which serves the processes that broadcast in turn, so one process that
  broadcasts without pause never holds up another's broadcasts or replies. A process
  that has more waiting in the engine than it may (4,096 operations or 8 MiB) is made
  to wait in the call until half of it is carried out: backpressure on the process
  that floods, and on no other.
  """

  @typedoc "The options of `start_link/1`, described in the moduledoc."
  @type options :: [
          http: [ip: :inet.ip_address() | String.t(), port: :inet.port_number(), head_timeout: pos_integer(), max_connections: pos_integer(), max_connections_per_address: pos_integer()] | false,
          https: [ip: :inet.ip_address() | String.t(), port: :inet.port_number(), certfile: Path.t(), keyfile: Path.t(), cipher_suite: :strong | :compatible, otp_app: atom()],
          static: [from: Path.t()],
          engine_threads: non_neg_integer(),
          tune_allocator: boolean(),
          secret_key_base: String.t(),
          pubsub_server: atom()
        ]

  alias Fenix.Native

  @doc "Starts the endpoint (it is a supervisor). See the options above."
  @callback start_link(options()) :: Supervisor.on_start()
  @doc "The port the endpoint listens on: the HTTP listener's, or the HTTPS one's when it has no other."
  @callback port() :: :inet.port_number()
  @doc "The port of the HTTPS listener, or nil when the endpoint has none."
  @callback https_port() :: :inet.port_number() | nil
  @doc """
  The endpoint's option `key` (see the options above), or `default` when it has none.

  While the endpoint runs, these are the options it was started with: those given to
  `start_link/1` merged over the application config. Before it starts, the
  application config alone.

      MyAppWeb.Endpoint.config(:secret_key_base)
      MyAppWeb.Endpoint.config(:http, [])
  """
  @callback config(key :: atom(), default :: term()) :: term()
  @doc """
  Broadcasts `event` with `payload` to every subscriber of `topic`.

  `payload` is a map (sent as JSON) or `{:binary, data}`. Returns `:ok`, or nothing is
  sent and:

    * `{:error, {:unsupported_payload, payload}}`: the payload cannot be JSON;
    * `{:error, {:unencodable, text}}`: a binary payload whose topic or event is over
      the 255 bytes (of UTF-8) a binary frame's header field may hold.
  """
  @callback broadcast(topic :: String.t(), event :: String.t(), payload :: term()) ::
              :ok | {:error, {:unsupported_payload, term()} | {:unencodable, String.t()}}
  @doc "Same as `c:broadcast/3`, but raises if broadcast fails."
  @callback broadcast!(topic :: String.t(), event :: String.t(), payload :: term()) :: :ok
  @doc """
  Broadcasts to every subscriber of `topic` except the connection of the channel
  process `from`.
  """
  @callback broadcast_from(from :: pid(), topic :: String.t(), event :: String.t(), payload :: term()) ::
              :ok | {:error, term()}
  @doc "Same as `c:broadcast_from/4`, but raises if broadcast fails."
  @callback broadcast_from!(from :: pid(), topic :: String.t(), event :: String.t(), payload :: term()) ::
              :ok
  @doc "Broadcasts to the subscribers on this node only."
  @callback local_broadcast(topic :: String.t(), event :: String.t(), payload :: term()) ::
              :ok | {:error, term()}
  @doc "Broadcasts to the subscribers on this node only, except the process `from`."
  @callback local_broadcast_from(from :: pid(), topic :: String.t(), event :: String.t(), payload :: term()) ::
              :ok | {:error, term()}
  @doc """
  Subscribes the caller to `topic` on the endpoint's `:pubsub_server`: it receives a
  `%Fenix.Socket.Broadcast{}` for each broadcast to the topic. Options as
  `Fenix.PubSub.subscribe/3`.
  """
  @callback subscribe(topic :: String.t(), opts :: keyword()) :: :ok | {:error, term()}
  @doc "Unsubscribes the caller from `topic`."
  @callback unsubscribe(topic :: String.t()) :: :ok
  @doc """
  Called by the application's `config_change/3` on a release upgrade, as
  `mix phx.new` generates it. The endpoint reads its config when it starts, so this
  does nothing: restart the endpoint to apply a change.
  """
  @callback config_change(changed :: keyword(), removed :: [atom()]) :: :ok

  @doc false
  defmacro __using__(opts) do
    quote do
      @behaviour Fenix.Endpoint
      @otp_app Keyword.fetch!(unquote(opts), :otp_app)
      import Fenix.Endpoint, only: [socket: 2, socket: 3]
      Module.register_attribute(__MODULE__, :fenix_sockets, accumulate: true)
      @before_compile Fenix.Endpoint

      def child_spec(opts) do
        %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, type: :supervisor}
      end

      @impl Fenix.Endpoint
      def start_link(opts \\ []), do: Fenix.Endpoint.Supervisor.start_link(__MODULE__, @otp_app, opts)

      @impl Fenix.Endpoint
      def port, do: Fenix.Endpoint.port(__MODULE__)

      @impl Fenix.Endpoint
      def https_port, do: Fenix.Endpoint.https_port(__MODULE__)

      @impl Fenix.Endpoint
      def config(key, default \\ nil), do: Fenix.Endpoint.config(__MODULE__, @otp_app, key, default)

      @impl Fenix.Endpoint
      def broadcast(topic, event, payload), do: Fenix.Endpoint.broadcast(__MODULE__, topic, event, payload)

      @impl Fenix.Endpoint
      def broadcast!(topic, event, payload), do: Fenix.Endpoint.broadcast!(__MODULE__, topic, event, payload)

      @impl Fenix.Endpoint
      def broadcast_from(from, topic, event, payload),
        do: Fenix.Endpoint.broadcast_from(__MODULE__, from, topic, event, payload)

      @impl Fenix.Endpoint
      def broadcast_from!(from, topic, event, payload),
        do: __MODULE__ |> Fenix.Endpoint.broadcast_from(from, topic, event, payload) |> Fenix.Endpoint.__raise_on_error__()

      @impl Fenix.Endpoint
      def local_broadcast(topic, event, payload), do: Fenix.Endpoint.broadcast(__MODULE__, topic, event, payload)

      @impl Fenix.Endpoint
      def local_broadcast_from(from, topic, event, payload),
        do: Fenix.Endpoint.broadcast_from(__MODULE__, from, topic, event, payload)

      @impl Fenix.Endpoint
      def subscribe(topic, opts \\ []), do: Fenix.PubSub.subscribe(Fenix.Endpoint.pubsub_server!(__MODULE__), topic, opts)

      @impl Fenix.Endpoint
      def unsubscribe(topic), do: Fenix.PubSub.unsubscribe(Fenix.Endpoint.pubsub_server!(__MODULE__), topic)

      @impl Fenix.Endpoint
      def config_change(_changed, _removed), do: :ok
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    sockets = env.module |> Module.get_attribute(:fenix_sockets) |> Enum.reverse()

    quote do
      @doc false
      def __sockets__, do: unquote(Macro.escape(sockets))
    end
  end

  # The `websocket:` options of a socket, all positive integers; what is left out gets
  # the engine's default (see Fenix.Socket).
  @socket_options [
    :timeout,
    :max_frame_size,
    :max_channels,
    :outbox_capacity,
    :outbox_capacity_bytes,
    :max_unhandled_messages,
    :max_unhandled_bytes,
    :connect_timeout,
    :frame_timeout,
    :slow_reader_timeout,
    :max_messages_per_second,
    :max_joins_per_second
  ]

  @doc """
  Mounts `socket_module` at `path`: the WebSocket is served at `<path>/websocket`, and
  with `longpoll: true` (or `longpoll: [window_ms: ...]`) Phoenix's long-poll transport
  at `<path>/longpoll`. See `Fenix.Socket` for the `websocket:` and `longpoll:` options.

  The module is a `Fenix.Socket` (`use Fenix.Socket`: channels), or a
  `Fenix.Socket.Transport` (`@behaviour Fenix.Socket.Transport`: raw messages, over
  WebSocket only); anything else makes the endpoint fail to start, naming the module.

      socket "/socket", MyAppWeb.UserSocket, websocket: [timeout: 45_000], longpoll: true
      socket "/counter", MyAppWeb.CounterSocket, websocket: true

  `drainer:` says how the socket's connections are closed when the endpoint shuts
  down, as Phoenix's drainer: the endpoint stops accepting (its port is released), then
  closes `batch_size` connections with 1012 (Service Restart) every `batch_interval` ms
  for at most `shutdown` ms, so that clients reconnect to another server spread over
  time instead of all at once; channels get `terminate/2` with `{:shutdown, :closed}`.
  What is left after `shutdown` is closed at once. Default
  `#{inspect(Fenix.Endpoint.Drainer.defaults())}`; `drainer: false` closes them all at
  once; `{module, function, args}` is called when the endpoint starts and when it
  stops, for options read at run time.
  """
  defmacro socket(path, socket_module, opts \\ []) do
    socket_module = Macro.expand(socket_module, %{__CALLER__ | function: {:socket, 3}})

    quote do
      @fenix_sockets Fenix.Endpoint.__socket__(unquote(path), unquote(socket_module), unquote(opts))
    end
  end

  @doc false
  def __socket__(path, module, opts) do
    unless is_binary(path) and String.starts_with?(path, "/") do
      raise ArgumentError, "socket path must be a string starting with /, got: #{inspect(path)}"
    end

    opts = Keyword.validate!(opts, [:websocket, :longpoll, :drainer])
    drainer = drainer!(Keyword.get(opts, :drainer, []))

    websocket =
      case Keyword.get(opts, :websocket, true) do
        true -> []
        list when is_list(list) -> list
        other -> raise ArgumentError, "the :websocket option must be a keyword list, got: #{inspect(other)}"
      end

    # As given: a transport's connect/1 gets them as :options, its child_spec/1 the socket's.
    given = %{options: websocket, socket_options: opts}
    {connect_info, websocket} = Keyword.pop(websocket, :connect_info, [])
    connect_info = validate_connect_info!(connect_info)
    # nil: the endpoint's check_origin.
    {check_origin, websocket} = Keyword.pop(websocket, :check_origin)
    check_origin = if check_origin != nil, do: Fenix.Endpoint.Origin.parse!(check_origin)
    websocket = Keyword.validate!(websocket, @socket_options)

    for {key, value} <- websocket, not (is_integer(value) and value > 0) do
      raise ArgumentError, "the #{inspect(key)} socket option must be a positive integer, got: #{inspect(value)}"
    end

    # Every option named, nil for those left out: the engine fills in its defaults.
    websocket = Map.new(@socket_options, &{&1, Keyword.get(websocket, &1)})
    websocket = Map.put(websocket, :longpoll, longpoll!(Keyword.get(opts, :longpoll, false)))
    transport = Map.merge(given, %{connect_info: connect_info, check_origin: check_origin, drainer: drainer})
    {String.trim_trailing(path, "/"), module, websocket, transport}
  end

  # The `longpoll:` options, positive integers; nil (off), or a map of every option
  # with nil for those left out (the engine's defaults, see Fenix.Socket).
  @longpoll_options [:window_ms, :max_body_size]

  defp longpoll!(false), do: nil
  defp longpoll!(true), do: longpoll!([])

  defp longpoll!(options) when is_list(options) do
    options = Keyword.validate!(options, @longpoll_options)

    for {key, value} <- options, not (is_integer(value) and value > 0) do
      raise ArgumentError, "the #{inspect(key)} longpoll option must be a positive integer, got: #{inspect(value)}"
    end

    Map.new(@longpoll_options, &{&1, Keyword.get(options, &1)})
  end

  defp longpoll!(other) do
    raise ArgumentError, "the :longpoll option must be true, false or a keyword list, got: #{inspect(other)}"
  end

  # An MFA is called when the endpoint starts and stops, and checked then.
  defp drainer!({module, function, args} = mfa) when is_atom(module) and is_atom(function) and is_list(args), do: mfa
  defp drainer!(drainer), do: Fenix.Endpoint.Drainer.options!(drainer)

  # The connect info keys Phoenix knows, then any `key: value` of the application's own.
  @connect_info_keys [:peer_data, :trace_context_headers, :x_headers, :uri, :user_agent, :sec_websocket_headers, :auth_token]

  defp validate_connect_info!(items) when is_list(items) do
    Enum.map(items, fn
      key when key in @connect_info_keys ->
        key

      {:session, _} ->
        raise ArgumentError, "connect_info: {:session, _} needs Plug sessions, which Fenix does not have"

      {key, _value} = custom when is_atom(key) ->
        custom

      other ->
        raise ArgumentError,
              "connect_info: #{inspect(other)} is neither one of #{inspect(@connect_info_keys)} nor a {key, value} of the application's own"
    end)
  end

  defp validate_connect_info!(other) do
    raise ArgumentError, "the :connect_info socket option must be a list, got: #{inspect(other)}"
  end

  @doc false
  def port(endpoint), do: Native.endpoint_port(engine!(endpoint))

  @doc false
  def https_port(endpoint), do: Native.endpoint_https_port(engine!(endpoint))

  @doc false
  def config(endpoint, otp_app, key, default) when is_atom(key) do
    config = Fenix.Endpoint.Registration.config(endpoint) || Application.get_env(otp_app, endpoint, [])
    Keyword.get(config, key, default)
  end

  @doc false
  def broadcast(endpoint, topic, event, payload), do: __broadcast__(endpoint, topic, event, payload, nil, nil)

  @doc false
  def broadcast!(endpoint, topic, event, payload) do
    endpoint |> broadcast(topic, event, payload) |> __raise_on_error__()
  end

  @doc false
  def broadcast_from(endpoint, from, topic, event, payload) when is_pid(from) do
    __broadcast__(endpoint, topic, event, payload, conn_id_of(from), from)
  end

  @doc false
  def pubsub_server!(endpoint) do
    case endpoint.config(:pubsub_server) do
      nil -> raise ArgumentError, "#{inspect(endpoint)} has no :pubsub_server in its config; see Fenix.PubSub"
      pubsub -> pubsub
    end
  end

  # Channel processes keep their connection id in the process dictionary, so that
  # broadcast_from(self(), ...) works from inside the channel without a call.
  defp conn_id_of(pid) when pid == self(), do: Process.get(:fenix_conn_id)

  defp conn_id_of(pid) do
    with {:dictionary, dictionary} <- Process.info(pid, :dictionary),
         {:fenix_conn_id, conn_id} <- List.keyfind(dictionary, :fenix_conn_id, 0) do
      conn_id
    else
      _ -> nil
    end
  end

  @doc false
  def __broadcast__(endpoint, topic, event, payload, exclude, from)
      when is_binary(topic) and is_binary(event) do
    engine = engine!(endpoint)

    result =
      case Native.endpoint_broadcast(engine, topic, event, payload, exclude, from) do
        :dirty -> Native.endpoint_broadcast_dirty(engine, topic, event, payload, exclude, from)
        result -> result
      end

    case Native.await_pace(result) do
      :ok -> :ok
      {:error, :unsupported_term} -> {:error, {:unsupported_payload, payload}}
      {:error, {:encode, text}} -> {:error, {:unencodable, text}}
    end
  end

  @doc false
  def __raise_on_error__(:ok), do: :ok

  def __raise_on_error__({:error, {:unsupported_payload, payload}}) do
    raise ArgumentError, "broadcast payload cannot be encoded as JSON: #{inspect(payload)}"
  end

  def __raise_on_error__({:error, {:unencodable, text}}) do
    raise ArgumentError, "broadcast cannot be encoded: #{text}"
  end


  @doc false
  def engine!(endpoint) do
    case Fenix.Endpoint.Registration.engine(endpoint) do
      nil -> raise ArgumentError, "#{inspect(endpoint)} is not started"
      engine -> engine
    end
  end
end
