defmodule Fenix.Socket.Transport do
  @moduledoc """
  A custom transport: a socket that speaks raw WebSocket messages instead of the
  channel protocol. It mirrors `Phoenix.Socket.Transport`'s callbacks and return
  values, so a Phoenix transport module moves to Fenix by renaming its `@behaviour`.

      defmodule MyAppWeb.CounterSocket do
        @behaviour Fenix.Socket.Transport

        @impl true
        def child_spec(_opts), do: :ignore

        @impl true
        def connect(%{params: %{"token" => "secret"}}), do: {:ok, %{count: 0}}
        def connect(_transport_info), do: :error

        @impl true
        def init(state) do
          :timer.send_interval(1_000, :tick)
          {:ok, state}
        end

        @impl true
        def handle_in({text, opcode: :text}, state) do
          {:reply, :ok, {:text, "got \#{byte_size(text)} bytes"}, %{state | count: state.count + 1}}
        end

        def handle_in({_data, opcode: :binary}, state), do: {:stop, :normal, state}

        @impl true
        def handle_info(:tick, state), do: {:push, {:text, "\#{state.count} so far"}, state}

        @impl true
        def terminate(_reason, _state), do: :ok
      end

  Mount it like any socket; the WebSocket is served at `<path>/websocket`:

      socket "/counter", MyAppWeb.CounterSocket, websocket: true

  The socket's `websocket:` options are those of `Fenix.Socket` (`:timeout`,
  `:max_frame_size`, the outbox and inbound bounds, `:connect_info`, `:check_origin`,
  ...); `:max_channels` and `:max_joins_per_second` mean nothing here.

  ## Lifecycle

  1. When the endpoint starts, it starts `c:child_spec/1` of each transport module
     under its supervisor, given `[endpoint: endpoint] ++ socket_options`, as Phoenix
     does (`:ignore` starts nothing).
  2. A client opens `<path>/websocket?<params>`; the origin is checked as for any
     socket. `c:connect/1` runs in a short-lived process. `{:ok, state}` accepts;
     `:error` or `{:error, reason}` refuses: the upgrade is answered `403`, as
     Phoenix's default error handler does.
  3. Once accepted, the connection gets one process of its own, started under the
     endpoint's supervisor: it answers the upgrade (`101`), runs `c:init/1`, and from
     then on every callback below, one message at a time.
  4. Each whole text or binary message of the client reaches `c:handle_in/2`. The
     Rust engine does the WebSocket work: fragmented messages arrive assembled, text
     is checked to be UTF-8 (else the client is closed with 1007), messages over
     `:max_frame_size` close the client with 1009, pings are answered with pongs, and
     a client silent for `:timeout` is closed. A client that sends faster than
     `c:handle_in/2` keeps up is not read (TCP slows it down) once the process holds
     `:max_unhandled_messages` (or `:max_unhandled_bytes`) it has not handled yet:
     its mailbox stays bounded.
  5. Pings and pongs reach `c:handle_control/2` only if the module defines it; the
     engine answers the ping either way.
  6. Any other message the process receives goes to `c:handle_info/2`.
  7. What a callback pushes goes through the connection's bounded outbox, in the
     order it was sent; a client that does not read is disconnected.
  8. The connection ends:
     * `{:stop, reason, state}` closes it with 1000 when `reason` is `:normal`,
       `:shutdown` or `{:shutdown, _}`, with 1011 otherwise, after what was pushed
       before; `c:terminate/2` gets `reason`;
     * a crash of the process closes it with 1011; `c:terminate/2` runs as in any
       `GenServer` that crashes;
     * the connection closing ends the process, after `c:terminate/2` with
       `:closed` (the client closed it or went away), `:timeout` (idle),
       `:shutdown` (the server is stopping) or `{:error, close_code}` (the client
       broke the protocol or a limit, and was closed with that code: 1002, 1007,
       1008, 1009; 1008 too for a client that does not read what is pushed to it,
       and 1011 when this process holds its messages unhandled for a whole
       `:timeout`).

  Every callback may return any of the shapes listed at `t:callback_result/0`; the
  `status` of `{:reply, status, frame, state}` is ignored, as Phoenix's WebSocket
  transport ignores it.
  """

  @typedoc "The transport's state, kept between callbacks."
  @type state :: term()

  @typedoc "A message for the client: `:text` (UTF-8) or `:binary`, as iodata."
  @type frame :: {:text | :binary, iodata()}

  @typedoc """
  What `c:handle_in/2`, `c:handle_control/2` and `c:handle_info/2` return:

    * `{:ok, state}` - nothing to send
    * `{:push, frame, state}` - send `frame` to the client
    * `{:reply, status, frame, state}` - the same (`status` is `:ok` or `:error`, ignored)
    * `{:stop, reason, state}` - close the connection (see the lifecycle)
  """
  @type callback_result ::
          {:ok, state()}
          | {:push, frame(), state()}
          | {:reply, :ok | :error, frame(), state()}
          | {:stop, reason :: term(), state()}

  @doc """
  The child spec started under the endpoint's supervisor when it starts, or `:ignore`.
  `opts` are `[endpoint: endpoint]` followed by the options given to `socket/3`.

      def child_spec(_opts), do: :ignore
  """
  @callback child_spec(opts :: keyword()) :: Supervisor.child_spec() | :ignore

  @doc """
  Authenticates a client, in a process of its own (not the connection's). It gets:

    * `:endpoint` - the endpoint module
    * `:transport` - `:websocket`
    * `:options` - the socket's `websocket:` options, as given
    * `:params` - the connect query parameters, a map of strings
    * `:connect_info` - what the socket's `:connect_info` option asks for (see `Fenix.Socket`)

  Return `{:ok, state}` to accept (the state goes to `c:init/1`), `:error` or
  `{:error, reason}` to refuse (HTTP 403).

      def connect(%{params: %{"token" => "secret"}}), do: {:ok, %{}}
      def connect(_info), do: :error
  """
  @callback connect(transport_info :: map()) :: {:ok, state()} | {:error, term()} | :error

  @doc """
  Runs in the connection's process once the upgrade is answered, before any message.

      def init(state), do: {:ok, Map.put(state, :started_at, System.monotonic_time())}
  """
  @callback init(state()) :: {:ok, state()}

  @doc """
  A whole message of the client: `{message, opcode: :text | :binary}`.

      def handle_in({"ping", opcode: :text}, state), do: {:reply, :ok, {:text, "pong"}, state}
      def handle_in({_data, opcode: :binary}, state), do: {:ok, state}
  """
  @callback handle_in({message :: binary(), opts :: [opcode: :text | :binary]}, state()) :: callback_result()

  @doc """
  A ping or pong of the client: `{payload, opcode: :ping | :pong}`, `payload` being
  `nil` for a frame without one. Optional: without it, control frames do not reach
  the process. The engine answers pings with pongs itself.

      def handle_control({_payload, opcode: :ping}, state), do: {:ok, %{state | pings: state.pings + 1}}
  """
  @callback handle_control({payload :: binary() | nil, opts :: [opcode: :ping | :pong]}, state()) :: callback_result()

  @doc """
  Any other message the process receives.

      def handle_info({:notify, text}, state), do: {:push, {:text, text}, state}
  """
  @callback handle_info(message :: term(), state()) :: callback_result()

  @doc """
  The process is about to stop; `reason` says why (see the lifecycle).

      def terminate(_reason, _state), do: :ok
  """
  @callback terminate(reason :: term(), state()) :: term()

  @optional_callbacks handle_control: 2
end
