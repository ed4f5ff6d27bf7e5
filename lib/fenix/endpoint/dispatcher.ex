defmodule Fenix.Endpoint.Dispatcher do
  @moduledoc false
  # Owns an endpoint's engine server and answers its requests:
  #
  #   {:fenix_connect, conn, socket_index, params, connect_info, serializer}
  #       runs the socket's connect/3 (a transport's connect/1) in a process of its
  #       own, then accepts or refuses; an accepted transport gets a process of its
  #       own (Fenix.Socket.Transport.Server) that accepts the connection; a long-poll
  #       connect (`connect_info.transport == :longpoll`) is given its session token
  #       with the accept;
  #   {:fenix_join, conn, socket_state, topic, join_ref, ref, payload}
  #       finds the channel for the topic and starts its process;
  #   {:fenix_log, level, message}
  #       an engine log event, for Logger.
  #
  # It does no user work itself, so one slow callback never delays another client.
  #
  # The engine monitors this process: when it exits, however it exits, the server
  # stops and closes every connection with 1012, since nothing would answer their
  # joins any more. The successor binds the same port: the configured one, or for
  # port 0 the one its predecessor got (see Fenix.Endpoint.Registration). It traps
  # exits so that a shutdown runs terminate/2, which stops the server before the
  # process is gone.

  use GenServer

  require Logger

  alias Fenix.{Native, Socket}
  alias Fenix.Endpoint.{Origin, Registration}

  # The old server releases its port on an engine thread, a moment after its
  # dispatcher is gone: a successor that binds the same port retries for about 1 s.
  @bind_attempts 100
  @bind_retry_ms 10

  # The error reply of a join whose channel process could not be started, the same a
  # client gets when join/3 crashes.
  @join_crashed %{reason: "join crashed"}

  def start_link({endpoint, config, channels}) do
    GenServer.start_link(__MODULE__, {endpoint, config, channels})
  end

  @impl true
  def init({endpoint, config, channels}) do
    Process.flag(:trap_exit, true)
    sockets = config.sockets

    options = %{
      http: config.http != nil,
      ip: config.http && format_ip(config.http.ip),
      port: config.http && port(endpoint, config.http.port, &Native.endpoint_port/1),
      https: config.https && %{config.https | ip: format_ip(config.https.ip), port: port(endpoint, config.https.port, &Native.endpoint_https_port/1)},
      static_dir: config.static,
      engine_threads: config.engine_threads,
      tune_allocator: config.tune_allocator,
      head_timeout: config.head_timeout,
      max_connections: config.max_connections,
      max_connections_per_address: config.max_connections_per_address,
      sockets:
        for {path, _module, websocket, transport} <- sockets do
          Map.merge(websocket, %{path: path, raw: transport.kind == :raw})
        end,
      pubsub: config.pubsub_server && Fenix.PubSub.__state__(config.pubsub_server)
    }

    case start_engine(options, config) do
      {:ok, engine} ->
        Native.endpoint_log_to(self())
        Registration.put(endpoint, engine)
        origin = %{check: config.check_origin, url_host: config.url_host}
        {:ok, %{endpoint: endpoint, engine: engine, sockets: List.to_tuple(sockets), channels: channels, origin: origin}}

      {:error, reason} ->
        {:stop, {:endpoint_start_failed, reason}}
    end
  end

  # Port 0 picks a free port once; a restarted dispatcher binds the one its predecessor
  # got (`previous_port` of the predecessor's engine).
  defp port(endpoint, 0, previous_port) do
    case Registration.engine(endpoint) do
      nil -> 0
      previous -> previous_port.(previous)
    end
  end

  defp port(_endpoint, port, _previous_port), do: port

  defp start_engine(options, config) do
    fresh = fresh_ports(options, config)

    case bind(options, @bind_attempts) do
      # The predecessor's port of a port-0 listener was taken meanwhile: any port
      # serves better than none.
      {:error, :eaddrinuse} when fresh != options -> bind(fresh, 1)
      result -> result
    end
  end

  # The options with the port-0 listeners back on port 0.
  defp fresh_ports(options, config) do
    options = if config.http && config.http.port == 0, do: %{options | port: 0}, else: options
    if config.https && config.https.port == 0, do: put_in(options.https.port, 0), else: options
  end

  defp bind(options, attempts) do
    case Native.endpoint_start(self(), options) do
      {:error, :eaddrinuse} when attempts > 1 ->
        Process.sleep(@bind_retry_ms)
        bind(options, attempts - 1)

      result ->
        result
    end
  end

  @impl true
  def handle_info({:fenix_connect, conn, index, params, info, serializer}, state) do
    {_path, handler, _websocket, transport} = elem(state.sockets, index)
    endpoint = state.endpoint
    # A plain short-lived process, like Phoenix's transport runs connect/3 in its own:
    # connect/6 below catches everything, and a connect never answered is refused by
    # the engine after the socket's connect_timeout. No supervisor call per client.
    # At low priority: a storm of connects (thousands a second, as in a reconnect wave
    # or an attack) then waits behind the channels of connected clients instead of
    # delaying their broadcasts; low-priority processes still run, interleaved.
    check_origin = if transport.check_origin == nil, do: state.origin.check, else: transport.check_origin
    url_host = state.origin.url_host
    channels = state.channels

    Process.spawn(
      fn ->
        # The request's URI is made only if the check or the connect info needs it.
        if Origin.allowed?(check_origin, info.origin, url_host, fn -> request_uri(info) end) do
          requested = connect_info(info, transport.connect_info)

          case transport.kind do
            :channels -> connect(endpoint, handler, conn, params, requested, serializer, info.transport)
            :raw -> connect_transport(endpoint, handler, conn, params, requested, transport.options, channels)
          end
        else
          Origin.log_refused(handler, info.origin)
          Native.conn_refuse(conn)
        end
      end,
      priority: :low
    )
    {:noreply, state}
  end

  def handle_info({:fenix_join, conn, socket_state, topic, join_ref, ref, payload}, state) do
    {handler, id, assigns, serializer, transport} = :erlang.binary_to_term(socket_state)

    socket = %Socket{
      endpoint: state.endpoint,
      handler: handler,
      id: id,
      assigns: assigns,
      serializer: serializer,
      transport: transport
    }
    join = {topic, join_ref, ref}

    case socket.handler.__channel__(topic) do
      {channel, opts} ->
        socket = %{socket | channel: channel, assigns: Map.merge(assigns, Keyword.get(opts, :assigns, %{}))}
        start_channel(state.channels, socket, conn, join, payload)

      nil ->
        Logger.warning("Ignoring unmatched topic #{inspect(topic)} in #{inspect(socket.handler)}")
        Native.conn_join_unmatched(conn, join)
    end

    {:noreply, state}
  end

  def handle_info({:fenix_log, level, message}, state) do
    Logger.log(level, message)
    {:noreply, state}
  end

  # The answer to a sender whose lane in the engine was full (see Fenix.Native.await_pace/1).
  # The dispatcher sends little (the replies of joins it could not start) and never
  # waits: one client's joins must not hold up another's.
  def handle_info(:fenix_resume, state), do: {:noreply, state}

  def handle_info(message, state) do
    Logger.debug("#{inspect(__MODULE__)} ignored an unexpected message: #{inspect(message)}")
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, state), do: Native.endpoint_stop(state.engine)

  # Every join gets an answer: a channel process that cannot be started is a join
  # that crashed.
  defp start_channel(channels, %Socket{channel: channel} = socket, conn, {topic, _, _} = join, payload) do
    spec = {channel, {socket, conn, join, payload}}

    with :error <- start_child(channels, spec, "#{inspect(channel)} for topic #{inspect(topic)}") do
      Native.conn_join_failed(conn, join, @join_crashed)
    end
  end

  # Starts `spec` under `supervisor`: :ok, or :error (logged, naming `what`) for a
  # process that cannot be started: a bad child spec, a start_link that fails, the
  # supervisor gone.
  defp start_child(supervisor, spec, what) do
    result =
      try do
        DynamicSupervisor.start_child(supervisor, spec)
      catch
        kind, reason -> {kind, reason}
      end

    case result do
      {:ok, _pid} ->
        :ok

      {:ok, _pid, _info} ->
        :ok

      failed ->
        Logger.error("Could not start #{what}: #{inspect(failed)}")
        :error
    end
  end

  # What the socket asked for (`connect_info:`), from all the engine gives.
  defp connect_info(info, requested) do
    Map.new(requested, fn
      {key, value} -> {key, value}
      :uri -> {:uri, request_uri(info)}
      key -> {key, Map.fetch!(info, key)}
    end)
  end

  # The upgrade request's URI, as Phoenix's connect info gives it: scheme (https for
  # the HTTPS listener's connections), host and port (from the Host header, else the
  # scheme's), path and query.
  defp request_uri(%{uri: path_and_query, host: host, secure: secure}) do
    %URI{path: path, query: query} = URI.parse(path_and_query)
    scheme = if secure, do: "https", else: "http"

    case host && URI.parse(scheme <> "://" <> host) do
      %URI{host: name, port: port} when is_binary(name) ->
        %URI{scheme: scheme, host: name, port: port, authority: name, path: path, query: query}

      _no_host ->
        %URI{scheme: scheme, path: path, query: query}
    end
  end

  defp connect(endpoint, handler, conn, params, info, serializer, transport) do
    result =
      try do
        Socket.__connect__(endpoint, handler, params, info, serializer, transport)
      catch
        kind, reason ->
          Logger.error(
            "#{inspect(handler)}.connect/3 crashed:\n" <> Exception.format(kind, reason, __STACKTRACE__)
          )

          :error
      end

    case result do
      {:ok, socket} ->
        # The engine keeps this per connection and hands it back with every join:
        # only what a channel's socket needs, not the whole struct.
        socket_state = {socket.handler, socket.id, socket.assigns, socket.serializer, transport}
        Native.conn_accept(conn, socket.id, :erlang.term_to_binary(socket_state), session_token(endpoint, transport))

      _refused ->
        Native.conn_refuse(conn)
    end
  end

  # A Fenix.Socket.Transport: connect/1 here, then the connection's own process, which
  # accepts the connection itself. Anything but {:ok, state} refuses (403), as Phoenix's
  # default error handler does.
  defp connect_transport(endpoint, handler, conn, params, info, options, supervisor) do
    transport_info = %{endpoint: endpoint, transport: :websocket, options: options, params: params, connect_info: info}

    result =
      try do
        handler.connect(transport_info)
      catch
        kind, reason ->
          Logger.error("#{inspect(handler)}.connect/1 crashed:\n" <> Exception.format(kind, reason, __STACKTRACE__))
          :error
      end

    case result do
      {:ok, transport_state} ->
        start_transport(supervisor, handler, transport_state, conn)

      :error ->
        Native.conn_refuse(conn)

      {:error, _reason} ->
        Native.conn_refuse(conn)

      invalid ->
        Logger.error(
          "#{inspect(handler)}.connect/1 returned invalid value #{inspect(invalid)}. " <>
            "Expected {:ok, state}, {:error, reason} or :error"
        )

        Native.conn_refuse(conn)
    end
  end

  defp start_transport(supervisor, handler, transport_state, conn) do
    spec = {Fenix.Socket.Transport.Server, {handler, transport_state, conn}}

    with :error <- start_child(supervisor, spec, "the transport process of #{inspect(handler)}") do
      Native.conn_refuse(conn)
    end
  end

  # A long-poll session is looked up by its token alone, in the engine: the token must
  # be unguessable. Signed with the endpoint's secret_key_base when it has one (as
  # Phoenix signs its long-poll tokens), else 128 random bits; random data either way,
  # so that no two sessions share a token.
  @session_salt "fenix longpoll session"

  defp session_token(_endpoint, :websocket), do: nil

  defp session_token(endpoint, :longpoll) do
    id = :crypto.strong_rand_bytes(16)

    case endpoint.config(:secret_key_base) do
      key_base when is_binary(key_base) -> Fenix.Token.sign(key_base, @session_salt, id)
      nil -> Base.url_encode64(id, padding: false)
    end
  end

  defp format_ip(nil), do: nil
  defp format_ip(ip) when is_tuple(ip), do: ip |> :inet.ntoa() |> to_string()
  defp format_ip(ip) when is_binary(ip), do: ip
end
