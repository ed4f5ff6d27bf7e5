defmodule Fenix.Endpoint.Drainer do
  @moduledoc false
  # Drains an endpoint's connections when the endpoint shuts down, as Phoenix's socket
  # drainer does: the supervisor stops its children last to first, so this process,
  # after the dispatcher, terminates first. It stops the engine accepting (the port is
  # released), then closes each socket's connections with 1012 a batch at a time,
  # `batch_interval` ms apart, for at most `shutdown` ms; the clients reconnect, to
  # another server, spread over the interval instead of all at once. What is left when
  # the time is up is closed at once by the dispatcher's stop. Each socket's `drainer:`
  # option (see Fenix.Endpoint.socket/3) sets these; `drainer: false` skips it.

  use GenServer

  require Logger

  @defaults [batch_size: 10_000, batch_interval: 2_000, shutdown: 30_000]

  @doc false
  def defaults, do: @defaults

  @doc false
  # The options of a socket's `drainer:` (false, a keyword list, or an MFA returning
  # either), checked, with the defaults filled in.
  def options!({module, function, args}), do: options!(apply(module, function, args))
  def options!(false), do: false

  def options!(options) when is_list(options) do
    options = Keyword.validate!(options, @defaults)

    for {key, value} <- options, not (is_integer(value) and value > 0) do
      raise ArgumentError, "the drainer's #{inspect(key)} must be a positive integer, got: #{inspect(value)}"
    end

    options
  end

  def options!(other) do
    raise ArgumentError, "the :drainer socket option must be a keyword list, false or an MFA, got: #{inspect(other)}"
  end

  def child_spec(endpoint) do
    # The supervisor kills this process if it outlives the sockets' shutdowns.
    shutdown = endpoint |> drained_sockets() |> Enum.map(fn {_path, drainer} -> drainer[:shutdown] end) |> Enum.sum()
    %{id: :drainer, start: {__MODULE__, :start_link, [endpoint]}, shutdown: max(shutdown, 1)}
  end

  def start_link(endpoint), do: GenServer.start_link(__MODULE__, endpoint)

  @impl true
  def init(endpoint) do
    Process.flag(:trap_exit, true)
    {:ok, endpoint}
  end

  # Only an orderly shutdown drains: when the endpoint's supervisor is killed, its
  # successor is about to serve, and the dispatcher's stop closes everything at once.
  @impl true
  def terminate(reason, endpoint) when reason == :shutdown or (is_tuple(reason) and elem(reason, 0) == :shutdown) do
    case Fenix.Endpoint.Registration.engine(endpoint) do
      nil -> :ok
      engine -> for {path, drainer} <- drained_sockets(endpoint), do: drain(engine, path, drainer)
    end
  end

  def terminate(_reason, _endpoint), do: :ok

  defp drain(engine, path, drainer) do
    deadline = System.monotonic_time(:millisecond) + drainer[:shutdown]
    engine |> drain(path, drainer, deadline, 1, []) |> await_channels(deadline)
  end

  # The channels of the closed connections (a raw socket's: their transport processes)
  # are monitored: they are told, and stop (terminate/2) before the endpoint's
  # supervisor stops the rest.
  defp drain(engine, path, drainer, deadline, round, monitors) do
    {closed, left, channels} = Fenix.Native.endpoint_drain(engine, path, drainer[:batch_size])
    if closed > 0, do: Logger.info("draining #{path}: round #{round} closed #{closed} connections, #{left} left")
    monitors = Enum.map(channels, &Process.monitor/1) ++ monitors

    if left > 0 and System.monotonic_time(:millisecond) + drainer[:batch_interval] < deadline do
      Process.sleep(drainer[:batch_interval])
      drain(engine, path, drainer, deadline, round + 1, monitors)
    else
      monitors
    end
  end

  defp await_channels(monitors, deadline) do
    Enum.each(monitors, fn monitor ->
      timeout = max(deadline - System.monotonic_time(:millisecond), 0)
      receive do: ({:DOWN, ^monitor, _, _, _} -> :ok), after: (timeout -> :ok)
    end)
  end

  defp drained_sockets(endpoint) do
    for {path, _module, _websocket, %{drainer: drainer}} <- endpoint.__sockets__(),
        drainer = options!(drainer),
        do: {path, drainer}
  end
end
