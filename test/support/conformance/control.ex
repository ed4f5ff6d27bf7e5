defmodule Fenix.Conformance.Control do
  @moduledoc false
  # The test-only control of `mix fenix.conformance --control`: commands read from
  # standard input, one per line, that kill parts of the app's supervision tree, so
  # that tests with real clients can check that every connection recovers.
  #
  #   kill dispatcher   kills the endpoint's dispatcher; the endpoint restarts it
  #   kill endpoint     kills the endpoint's supervisor; Control.Supervisor (the app's
  #                     tree) restarts it
  #   stop endpoint     stops the endpoint as a shutdown does (its connections are
  #                     drained, see the socket's drainer:); it stays stopped
  #
  # Each answers `killed <what>` (`stopped endpoint`) on standard output once the
  # process is dead (its successor may still be starting), or `unknown command: <line>`. At the end of
  # standard input it returns, and the task with it: the test that drove it is gone.

  alias Fenix.Conformance.Endpoint

  def run do
    case IO.read(:stdio, :line) do
      :eof ->
        :ok

      {:error, reason} ->
        raise "cannot read commands: #{inspect(reason)}"

      line ->
        line |> String.trim() |> execute() |> IO.puts()
        run()
    end
  end

  defp execute("kill dispatcher") do
    {:engine, engine, :supervisor, _} = List.keyfind(Supervisor.which_children(Endpoint), :engine, 0)
    {:dispatcher, pid, :worker, _} = List.keyfind(Supervisor.which_children(engine), :dispatcher, 0)
    kill(pid, "dispatcher")
  end

  defp execute("kill endpoint"), do: kill(Process.whereis(Endpoint), "endpoint")

  defp execute("stop endpoint") do
    :ok = Supervisor.terminate_child(Fenix.Conformance.Control.Supervisor, Endpoint)
    "stopped endpoint"
  end
  defp execute(line), do: "unknown command: #{line}"

  defp kill(pid, what) do
    ref = Process.monitor(pid)
    Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, ^pid, _reason} -> "killed #{what}"
    end
  end
end
