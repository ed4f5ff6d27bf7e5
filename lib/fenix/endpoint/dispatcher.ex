defmodule Fenix.Endpoint.Dispatcher do
  @moduledoc false
  # Owns an endpoint's engine server and answers its requests:
  #
  #   {:fenix_connect, conn, socket_index, params, connect_info}
  #       runs the socket's connect/3 in a process of its own, then accepts or refuses;
  #   {:fenix_join, conn, socket_state, topic, join_ref, ref, payload}
  #       finds the channel for the topic and starts its process;
  #   {:fenix_log, level, message}
  #       an engine log event, for Logger.
  #
  # It does no user work itself, so one slow callback never delays another client.

  use GenServer

  require Logger

  alias Fenix.{Native, Socket}

  def start_link({endpoint, config}) do
    GenServer.start_link(__MODULE__, {endpoint, config}, name: Module.concat(endpoint, Dispatcher))
  end

  @impl true
  def init({endpoint, config}) do
    sockets = endpoint.__sockets__()

    options = %{
      ip: config.http |> Keyword.fetch!(:ip) |> format_ip(),
      port: Keyword.fetch!(config.http, :port),
      static_dir: config.static,
      engine_threads: config.engine_threads,
      sockets: for({path, _module, ws} <- sockets, do: ws |> Map.new() |> Map.put(:path, path))
    }

    case Native.endpoint_start(self(), options) do
      {:ok, engine} ->
        Native.endpoint_log_to(self())
        :persistent_term.put({Fenix.Endpoint, endpoint}, engine)
        state = %{endpoint: endpoint, engine: engine, sockets: List.to_tuple(sockets)}
        {:ok, state}

      {:error, reason} ->
        {:stop, {:endpoint_start_failed, reason}}
    end
  end

  @impl true
  def handle_info({:fenix_connect, conn, index, params, info}, state) do
    {_path, handler, _opts} = elem(state.sockets, index)
    endpoint = state.endpoint
    # A plain short-lived process, like Phoenix's transport runs connect/3 in its own:
    # connect/4 below catches everything, and a connect never answered is refused by
    # the engine after the socket's connect_timeout. No supervisor call per client.
    spawn(fn -> connect(endpoint, handler, conn, params, info) end)
    {:noreply, state}
  end

  def handle_info({:fenix_join, conn, socket_state, topic, join_ref, ref, payload}, state) do
    {handler, id, assigns, serializer} = :erlang.binary_to_term(socket_state)
    socket = %Socket{endpoint: state.endpoint, handler: handler, id: id, assigns: assigns, serializer: serializer}
    join = {topic, join_ref, ref}

    case socket.handler.__channel__(topic) do
      {channel, _opts} ->
        socket = %{socket | channel: channel}
        supervisor = Module.concat(state.endpoint, Channels)
        {:ok, _pid} = DynamicSupervisor.start_child(supervisor, {channel, {socket, conn, join, payload}})

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

  @impl true
  def terminate(_reason, state) do
    Native.endpoint_stop(state.engine)
    :persistent_term.erase({Fenix.Endpoint, state.endpoint})
  end

  defp connect(endpoint, handler, conn, params, info) do
    serializer = if String.starts_with?(Map.get(params, "vsn", "1"), "2"), do: :v2, else: :v1
    info = Map.update!(info, :uri, &URI.parse/1)

    result =
      try do
        Socket.__connect__(endpoint, handler, params, info, serializer)
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
        socket_state = {socket.handler, socket.id, socket.assigns, socket.serializer}
        Native.conn_accept(conn, socket.id, :erlang.term_to_binary(socket_state))

      _refused -> Native.conn_refuse(conn)
    end
  end

  defp format_ip(ip) when is_tuple(ip), do: ip |> :inet.ntoa() |> to_string()
  defp format_ip(ip) when is_binary(ip), do: ip
end
