defmodule Mix.Tasks.Fenix.Conformance do
  @shortdoc "Runs the conformance app that real channel clients are tested against"
  @moduledoc """
  Starts the conformance app of `CONFORMANCE.md` and runs until stopped.

      PORT=4001 mix fenix.conformance

  Listens on 127.0.0.1:$PORT (default 4001) and prints
  `listening on 127.0.0.1:<port>` once it accepts connections. `FENIX_ENGINE_THREADS`
  sets the engine's worker threads (default: one per core), for benchmarks. The app's modules live
  in `test/support/conformance`, so the task runs in the `test` environment.
  """
  use Mix.Task

  @impl true
  def run(_args) do
    Mix.Task.run("app.start")
    port = String.to_integer(System.get_env("PORT", "4001"))
    endpoint = Module.concat([Fenix, Conformance, Endpoint])
    threads = String.to_integer(System.get_env("FENIX_ENGINE_THREADS", "0"))
    {:ok, _pid} = endpoint.start_link(http: [ip: {127, 0, 0, 1}, port: port], engine_threads: threads)
    Mix.shell().info("listening on 127.0.0.1:#{endpoint.port()}")
    Process.sleep(:infinity)
  end
end
