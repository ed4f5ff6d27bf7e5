defmodule Fenix.Channel do
  @moduledoc ~S"""
  A channel: one process per joined topic per connection, with the callbacks and
  functions of `Phoenix.Channel`.

      defmodule MyAppWeb.RoomChannel do
        use Fenix.Channel

        intercept ["user_joined"]

        @impl true
        def join("room:lobby", _payload, socket), do: {:ok, socket}
        def join("room:" <> _private, _payload, _socket), do: {:error, %{reason: "unauthorized"}}

        @impl true
        def handle_in("new_msg", %{"body" => body}, socket) do
          broadcast!(socket, "new_msg", %{body: body})
          {:noreply, socket}
        end

        @impl true
        def handle_out("user_joined", payload, socket) do
          unless payload.user_id == socket.assigns.user_id, do: push(socket, "user_joined", payload)
          {:noreply, socket}
        end
      end

  ## Lifecycle

  1. A client's `phx_join` for a topic routed to this module starts a channel process
     under the endpoint's supervisor and calls `c:join/3`.
     `{:ok, socket}` / `{:ok, reply, socket}` answers `ok` (with `reply`, default
     `%{}`) and subscribes the connection to the topic; `{:error, reply}` answers
     `error`. A raise in `c:join/3` is logged and answers `{"reason": "join crashed"}`.
  2. Client pushes arrive in `c:handle_in/3`; the reply (if any) goes to that push.
  3. Broadcasts to the topic go straight from the engine to the client, never through
     this process, except events listed in `intercept/1`, which arrive in
     `c:handle_out/3`.
  4. Other messages to the process arrive in `c:handle_info/2`.
  5. The channel ends when the client leaves (`phx_leave`: reply `ok`, then
     `phx_close`), when a callback returns `{:stop, reason, socket}` (`phx_close`),
     when the process crashes (the client gets `phx_error`; the connection's other
     channels carry on), or when the connection closes. `c:terminate/2` then runs
     with `{:shutdown, :left}`, the stop reason, or `{:shutdown, :closed}`.

  Idle channel processes hibernate after 15 s, as Phoenix's do.
  """

  alias Fenix.Channel.Client
  alias Fenix.Socket

  @type reply :: status :: atom() | {status :: atom(), response :: map() | {:binary, binary()}}
  @type socket_ref :: {:fenix_ref, reference(), ref :: Socket.client_ref()}

  @doc """
  Joins `topic`. Return `{:ok, socket}`, `{:ok, reply, socket}` or `{:error, reply}`;
  `reply` is a map sent to the client as the join's response.

      def join("room:" <> id, _payload, socket), do: {:ok, %{room: id}, assign(socket, :room, id)}
  """
  @callback join(topic :: String.t(), payload :: map(), socket :: Socket.t()) ::
              {:ok, Socket.t()} | {:ok, map(), Socket.t()} | {:error, map()}

  @doc """
  Handles a client push. Return `{:noreply, socket}`, `{:reply, reply, socket}`,
  `{:stop, reason, socket}` or `{:stop, reason, reply, socket}`.

      def handle_in("ping", payload, socket), do: {:reply, {:ok, payload}, socket}
  """
  @callback handle_in(event :: String.t(), payload :: term(), socket :: Socket.t()) ::
              {:noreply, Socket.t()}
              | {:noreply, Socket.t(), timeout() | :hibernate}
              | {:reply, reply(), Socket.t()}
              | {:stop, reason :: term(), Socket.t()}
              | {:stop, reason :: term(), reply(), Socket.t()}

  @doc """
  Handles an intercepted broadcast (see `intercept/1`) before it reaches this client.

      def handle_out("new_msg", payload, socket) do
        push(socket, "new_msg", Map.put(payload, "at", DateTime.utc_now()))
        {:noreply, socket}
      end
  """
  @callback handle_out(event :: String.t(), payload :: term(), socket :: Socket.t()) ::
              {:noreply, Socket.t()}
              | {:noreply, Socket.t(), timeout() | :hibernate}
              | {:stop, reason :: term(), Socket.t()}

  @doc """
  Handles any other message sent to the channel process.
  """
  @callback handle_info(message :: term(), socket :: Socket.t()) ::
              {:noreply, Socket.t()}
              | {:noreply, Socket.t(), timeout() | :hibernate}
              | {:stop, reason :: term(), Socket.t()}

  @doc """
  Called when the channel ends (see the lifecycle above).
  """
  @callback terminate(
              reason :: :normal | :shutdown | {:shutdown, :left | :closed | term()},
              socket :: Socket.t()
            ) :: term()

  @doc """
  Handles a `GenServer.call/3` to the channel process. Return `{:reply, response, socket}`,
  `{:noreply, socket}` (answer later with `GenServer.reply/2`) or `{:stop, reason, socket}`.
  """
  @callback handle_call(message :: term(), from :: GenServer.from(), socket :: Socket.t()) ::
              {:reply, response :: term(), Socket.t()}
              | {:noreply, Socket.t()}
              | {:stop, reason :: term(), Socket.t()}

  @doc """
  Handles a `GenServer.cast/2` to the channel process.
  """
  @callback handle_cast(message :: term(), socket :: Socket.t()) ::
              {:noreply, Socket.t()} | {:stop, reason :: term(), Socket.t()}

  @doc """
  Called on a hot code upgrade, as `c:GenServer.code_change/3`; without it the socket is
  kept as it is.
  """
  @callback code_change(old_vsn :: term() | {:down, term()}, socket :: Socket.t(), extra :: term()) ::
              {:ok, Socket.t()} | {:error, reason :: term()}

  @optional_callbacks handle_in: 3, handle_out: 3, handle_info: 2, handle_call: 3, handle_cast: 2, code_change: 3, terminate: 2

  @doc false
  defmacro __using__(_opts) do
    quote do
      @behaviour Fenix.Channel
      @before_compile Fenix.Channel
      Module.register_attribute(__MODULE__, :fenix_intercepts, accumulate: false)
      import Fenix.Channel
      import Fenix.Socket, only: [assign: 3, assign: 2]

      def child_spec(init_arg), do: Fenix.Channel.Server.child_spec(init_arg)
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    intercepts = Module.get_attribute(env.module, :fenix_intercepts) || []

    if intercepts != [] and not Module.defines?(env.module, {:handle_out, 3}) do
      IO.warn(
        "#{inspect(env.module)} intercepts #{inspect(intercepts)} but does not define handle_out/3",
        Macro.Env.stacktrace(env)
      )
    end

    quote do
      @doc false
      def __intercepts__, do: unquote(intercepts)
    end
  end

  @doc """
  Lists the broadcast events this channel handles in `c:handle_out/3` instead of
  having them sent to its client directly.

      intercept ["new_msg", "user_joined"]
  """
  defmacro intercept(events) do
    quote do
      events = unquote(events)

      unless is_list(events) and Enum.all?(events, &is_binary/1) do
        raise ArgumentError, "intercept/1 expects a list of event strings, got: #{inspect(events)}"
      end

      @fenix_intercepts events
    end
  end

  @doc """
  Broadcasts `event` with `payload` to every subscriber of the socket's topic.
  """
  @spec broadcast(Socket.t(), String.t(), term()) :: :ok | {:error, term()}
  def broadcast(%Socket{} = socket, event, payload) do
    assert_joined!(socket)
    Fenix.Endpoint.broadcast(socket.endpoint, socket.topic, event, payload)
  end

  @doc """
  Same as `broadcast/3`, but raises if broadcast fails.
  """
  @spec broadcast!(Socket.t(), String.t(), term()) :: :ok
  def broadcast!(%Socket{} = socket, event, payload) do
    assert_joined!(socket)
    Fenix.Endpoint.broadcast!(socket.endpoint, socket.topic, event, payload)
  end

  @doc """
  Broadcasts `event` to every subscriber of the socket's topic except this socket's
  own connection (and this channel process, if it subscribed to its topic itself).
  """
  @spec broadcast_from(Socket.t(), String.t(), term()) :: :ok | {:error, term()}
  def broadcast_from(%Socket{} = socket, event, payload) do
    assert_joined!(socket)
    Fenix.Endpoint.__broadcast__(socket.endpoint, socket.topic, event, payload, socket.conn_id, socket.channel_pid)
  end

  @doc """
  Same as `broadcast_from/3`, but raises if broadcast fails.
  """
  @spec broadcast_from!(Socket.t(), String.t(), term()) :: :ok
  def broadcast_from!(%Socket{} = socket, event, payload) do
    socket |> broadcast_from(event, payload) |> Fenix.Endpoint.__raise_on_error__()
  end

  @doc """
  Sends `event` with `payload` to this socket's client only.

  `payload` is a map (sent as JSON) or `{:binary, data}`. A binary payload goes to a
  `2.0.0` client in a binary frame, whose header fields (`join_ref`, topic, event) are
  at most 255 bytes each: a longer one raises `ArgumentError`, as in Phoenix.
  """
  @spec push(Socket.t(), String.t(), term()) :: :ok
  def push(%Socket{} = socket, event, payload) when is_binary(event) do
    __push__(socket, payload, fn ref ->
      with :changed <- push_listed(ref, event, payload) do
        Client.push(ref, event, payload)
      end
    end)
  end

  @doc false
  # A push made by `send` (given the channel's client handle), with push/3's check and
  # pacing: also Fenix.Presence.push_state/2's, which sends the engine's own payload.
  def __push__(%Socket{} = socket, payload, send) do
    assert_joined!(socket)
    :ok = socket.channel_ref |> send.() |> Fenix.Native.await_pace() |> ok!(payload)
  end

  # A presence list pushed as it was listed is sent as the engine encodes the state
  # (see Fenix.Presence); `:changed` when it is not one, or the topic changed since.
  defp push_listed(ref, event, payload) do
    case Fenix.Presence.Listed.take(payload) do
      {hub, topic, listed} -> Client.push_presence_state(ref, hub, topic, listed, event)
      nil -> :changed
    end
  end

  @doc """
  Replies to a client push later, from any process, with the ref taken by
  `socket_ref/1`.

      def handle_in("work", payload, socket) do
        ref = socket_ref(socket)
        Task.start(fn -> reply(ref, {:ok, do_work(payload)}) end)
        {:noreply, socket}
      end
  """
  @spec reply(socket_ref(), reply()) :: :ok
  def reply({:fenix_ref, channel_ref, ref}, reply) do
    {status, response} = normalize_reply(reply)
    :ok = channel_ref |> Client.reply(ref, status, response) |> Fenix.Native.await_pace() |> ok!(response)
  end

  @doc """
  A reference to the push being handled, for `reply/2` from another process.
  """
  @spec socket_ref(Socket.t()) :: socket_ref()
  def socket_ref(%Socket{joined: true, channel_ref: channel_ref, ref: ref}) when not is_nil(ref),
    do: {:fenix_ref, channel_ref, ref}

  def socket_ref(_socket) do
    raise ArgumentError, """
    socket refs can only be generated for a socket that has joined with a push ref
    """
  end

  defp normalize_reply({status, response}) when is_atom(status), do: {status, response}
  defp normalize_reply(status) when is_atom(status), do: {status, %{}}

  # The connection being gone (or being dropped because its client does not read) is
  # not an error for the caller: Phoenix's push/3 is fire-and-forget too. A payload
  # that cannot be JSON, or a binary frame's field over 255 bytes, is the caller's bug
  # (Phoenix's serializer raises ArgumentError for both).
  defp ok!(:ok, _payload), do: :ok
  defp ok!({:error, :closed}, _payload), do: :ok
  defp ok!({:error, :slow_client}, _payload), do: :ok

  defp ok!({:error, :unsupported_term}, payload) do
    raise ArgumentError, "payload cannot be encoded as JSON: #{inspect(payload)}"
  end

  defp ok!({:error, {:encode, text}}, _payload) do
    raise ArgumentError, "the message cannot be sent: #{text}"
  end

  defp ok!({:error, {reason, text}}, _payload) do
    raise RuntimeError, "the Fenix engine refused the message (#{reason}): #{text}"
  end

  defp assert_joined!(%Socket{joined: true}), do: :ok

  defp assert_joined!(%Socket{}) do
    raise """
    push/3, reply/2, and broadcast/3 can only be called after the socket has finished joining.
    To push a message on join, send a message to self and handle in handle_info/2.
    """
  end
end
