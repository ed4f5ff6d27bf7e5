defmodule Mix.Tasks.Fenix.Conformance do
  @shortdoc "Runs the conformance app that real channel clients are tested against"
  @moduledoc """
  Starts the conformance app of `CONFORMANCE.md` and runs until stopped.

      PORT=4001 mix fenix.conformance

  Listens on 127.0.0.1:$PORT (default 4001) and prints
  `listening on 127.0.0.1:<port>` once it accepts connections. `FENIX_ENGINE_THREADS`
  sets the engine's worker threads (default: one per core), for benchmarks;
  `FENIX_PRESENCE_TICK_MS` the presence's tick (default: `Fenix.Presence`'s), so a
  benchmark can compare coalesced diffs with a 1 ms tick; `FENIX_PRESENCE_STATE=list`
  makes the room channel push `presence_state` as `push(socket, "presence_state",
  Presence.list(socket))` rather than `Presence.push_state(socket)`, so that a
  benchmark can compare the two.

  `HTTPS_PORT=<port>` (0: any free port) adds an HTTPS listener serving the same
  socket, with a certificate for `localhost` and 127.0.0.1 made for the run
  (`Fenix.Test.Cert`) and written to `$FENIX_TLS_DIR` (required then) as `cert.pem`,
  `key.pem` and `ca.pem`, the CA a client trusts, and serves `test/fixtures/static`
  (an empty page at `/`), so that a browser can open a page of the https origin; the
  task prints `https listening at https://localhost:<port>` before the line above.

  The endpoint runs under a supervisor of its own, as in an application's tree, so
  that a crash of the endpoint is recovered from as it would be there. With
  `--control`, commands to kill parts of that tree are read from standard input (see
  `Fenix.Conformance.Control`), and the app stops when standard input ends.

  The task and the app live in `test/support`, compiled in the `test` environment
  only; `preferred_cli_env` in `mix.exs` makes `mix fenix.conformance` run there.
  """
  use Mix.Task

  alias Fenix.Conformance.{Control, Endpoint, Presence}

  @impl true
  def run(args) do
    {opts, _rest} = OptionParser.parse!(args, strict: [control: :boolean])
    Mix.Task.run("app.start")
    port = String.to_integer(System.get_env("PORT", "4001"))
    threads = String.to_integer(System.get_env("FENIX_ENGINE_THREADS", "0"))
    endpoint_opts =
      [http: [ip: {127, 0, 0, 1}, port: port], engine_threads: threads, pubsub_server: Fenix.Conformance.PubSub] ++ https_opts()
    # rest_for_one: a presence restarts with the endpoint it tracks on.
    presence_opts =
      if tick = System.get_env("FENIX_PRESENCE_TICK_MS"),
        do: [tick: String.to_integer(tick)],
        else: []

    children = [{Fenix.PubSub, name: Fenix.Conformance.PubSub}, {Endpoint, endpoint_opts}, {Presence, presence_opts}]
    state_by = if System.get_env("FENIX_PRESENCE_STATE") == "list", do: :list, else: :push_state
    Application.put_env(:fenix, Fenix.Conformance.RoomChannel, presence_state_by: state_by)

    {:ok, _pid} =
      Supervisor.start_link(children, strategy: :rest_for_one, name: Control.Supervisor)

    if Endpoint.https_port(), do: Mix.shell().info("https listening at https://localhost:#{Endpoint.https_port()}")
    Mix.shell().info("listening on 127.0.0.1:#{Endpoint.port()}")

    if opts[:control], do: Control.run(), else: Process.sleep(:infinity)
  end

  defp https_opts do
    case System.get_env("HTTPS_PORT") do
      nil ->
        []

      port ->
        dir = System.get_env("FENIX_TLS_DIR") || Mix.raise("HTTPS_PORT needs FENIX_TLS_DIR, where the certificate is written")
        cert = Fenix.Test.Cert.generate!(dir)
        [
          https: [ip: {127, 0, 0, 1}, port: String.to_integer(port), certfile: cert.certfile, keyfile: cert.keyfile],
          static: [from: "test/fixtures/static"]
        ]
    end
  end
end
