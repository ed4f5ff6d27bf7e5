defmodule Fenix.Endpoint.SupervisorTest do
  # The endpoint's tree: options checked before anything starts, and no failure or
  # stop of the tree leaves a connection open to a server nobody answers.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog
  import Fenix.Test.{Frames, Supervised}
  import Fenix.Test.Client, only: [assert_frame: 2, push: 2, eventually: 1]

  alias Fenix.Test.{SupervisedEndpoint, WSClient}

  describe "options" do
    test "an unknown endpoint option is refused before anything starts" do
      assert_raise ArgumentError, ~r/unknown keys \[:prot\]/, fn ->
        Fenix.Endpoint.Supervisor.start_link(Fenix.TestEndpoint, :fenix, http: [prot: 1])
      end
    end

    for {option, message} <- [
          {[http: [port: 70_000]], ~r/:port endpoint option must be a port number, got: 70000/},
          {[http: [ip: "not an ip"]], ~r/:ip endpoint option must be an IP address/},
          {[http: [ip: {1, 2, 3}]], ~r/:ip endpoint option must be an IP address/},
          {[engine_threads: -1], ~r/:engine_threads endpoint option must be a non-negative integer/},
          {[tune_allocator: :yes], ~r/:tune_allocator endpoint option must be a boolean, got: :yes/},
          {[secret_key_base: :none], ~r/:secret_key_base endpoint option must be a string, got: :none/}
        ] do
      test "#{inspect(option)} is refused before anything starts" do
        assert_raise ArgumentError, unquote(Macro.escape(message)), fn ->
          SupervisedEndpoint.start_link(unquote(Macro.escape(option)))
        end

        assert Process.whereis(SupervisedEndpoint) == nil
      end
    end

    test "a socket option that is not a positive integer is refused when the endpoint compiles" do
      assert_raise ArgumentError, ~r/:timeout socket option must be a positive integer, got: 0/, fn ->
        Fenix.Endpoint.__socket__("/socket", Fenix.TestSocket, websocket: [timeout: 0])
      end
    end

    test "options left out get the engine's defaults, which the NIF reports" do
      defaults = Fenix.Native.endpoint_defaults()
      assert %{ip: "127.0.0.1", port: 4000, engine_threads: 0, tune_allocator: true, head_timeout: 10_000} = defaults
      assert %{max_connections: 100_000, max_connections_per_address: 1_000} = defaults
      assert defaults.socket.max_channels == 100
      {_path, _socket, websocket, _transport} = Fenix.Endpoint.__socket__("/socket", Fenix.TestSocket, websocket: [timeout: 5])
      assert websocket.timeout == 5
      assert websocket |> Map.delete(:timeout) |> Map.values() |> Enum.uniq() == [nil]
      assert Map.keys(websocket) |> Enum.sort() == defaults.socket |> Map.keys() |> Enum.sort()
    end

    test "a connection that does not finish its request head in head_timeout gets 408" do
      start_supervised!({SupervisedEndpoint, http: [port: 0, head_timeout: 200]})
      {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", SupervisedEndpoint.port(), [:binary, active: false])
      :ok = :gen_tcp.send(socket, "GET /socket/websocket HTTP/1.1\r\n")
      assert {:ok, "HTTP/1.1 408 Request Timeout\r\n" <> _} = :gen_tcp.recv(socket, 0, 5_000)
    end

    test "an upgrade past max_connections_per_address gets 503" do
      start_supervised!({SupervisedEndpoint, http: [port: 0, max_connections_per_address: 1]})
      first = connect!(SupervisedEndpoint.port())
      assert {:error, {:http, 503, _}} = WSClient.connect(SupervisedEndpoint.port(), "/socket/websocket")
      WSClient.close(first)
    end

    test "the http limits must be positive integers" do
      for key <- [:head_timeout, :max_connections, :max_connections_per_address] do
        assert_raise ArgumentError, ~r/#{key}/, fn -> SupervisedEndpoint.start_link(http: [{key, 0}]) end
      end
    end

    test "an endpoint that cannot bind its port does not start" do
      {:ok, taken} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
      {:ok, port} = :inet.port(taken)
      Process.flag(:trap_exit, true)

      assert {:error, {:shutdown, {:failed_to_start_child, :engine, {:shutdown, {:failed_to_start_child, :dispatcher, {:endpoint_start_failed, :eaddrinuse}}}}}} =
               SupervisedEndpoint.start_link(http: [port: port])
    end
  end

  describe "a stop of the endpoint" do
    setup do
      start_supervised!({SupervisedEndpoint, http: [port: 0]})
      :ok
    end

    test "drains every connection with 1012, stops their channels and releases the port" do
      port = SupervisedEndpoint.port()
      c = connect!(port)
      push(c, client(:v2, "1", "1", "test:stop", "phx_join", "{}"))
      assert_frame(c, reply(:v2, "1", "1", "test:stop", "ok", ~s({"topic":"test:stop"})))
      assert_receive {:joined, "test:stop", _, channel}

      :ok = stop_supervised(SupervisedEndpoint)

      assert {{:close, 1012, "server draining"}, _} = WSClient.recv(c)
      assert_receive {:terminate, "test:stop", {:shutdown, :closed}}
      refute Process.alive?(channel)
      assert eventually(fn -> :gen_tcp.connect(~c"127.0.0.1", port, []) == {:error, :econnrefused} end)
      assert_raise ArgumentError, ~r/is not started/, fn -> SupervisedEndpoint.port() end
    end
  end

  describe "the drain" do
    setup do
      start_supervised!({SupervisedEndpoint, http: [port: 0]})
      :ok
    end

    test "closes a socket's connections a batch at a time, as its drainer: says; drainer: false closes at once" do
      port = SupervisedEndpoint.port()
      drained = for _ <- 1..3, do: connect!(port, "/drained")
      undrained = connect!(port, "/undrained")

      log = capture_log(fn -> :ok = stop_supervised(SupervisedEndpoint) end)

      for c <- drained, do: assert({{:close, 1012, "server draining"}, _} = WSClient.recv(c))
      assert {{:close, 1012, "server restart"}, _} = WSClient.recv(undrained)
      for round <- 1..3, do: assert(log =~ "draining /drained: round #{round} closed 1 connections, #{3 - round} left")
      refute log =~ "round 4"
    end

    test "closes a transport's connections with 1012 and waits for their terminate/2" do
      c = connect!(SupervisedEndpoint.port(), "/transport")
      assert_receive {:transport_init, transport}
      ref = Process.monitor(transport)

      :ok = stop_supervised(SupervisedEndpoint)

      assert {{:close, 1012, "server draining"}, _} = WSClient.recv(c)
      assert_receive {:transport_terminate, :shutdown}
      # Waited for: gone by the time the endpoint is.
      assert_received {:DOWN, ^ref, :process, ^transport, _}
    end
  end

  describe "a kill of the endpoint supervisor" do
    setup do
      # As in an application's tree: a parent restarts the endpoint.
      children = [{SupervisedEndpoint, http: [port: 0]}]
      start = {Supervisor, :start_link, [children, [strategy: :one_for_one]]}
      start_supervised!(%{id: :parent, start: start, type: :supervisor})
      :ok
    end

    test "closes every connection with 1012; the restarted endpoint serves the same port" do
      port = SupervisedEndpoint.port()
      c = connect!(port)
      push(c, client(:v2, "1", "1", "test:kill", "phx_join", "{}"))
      assert_frame(c, reply(:v2, "1", "1", "test:kill", "ok", ~s({"topic":"test:kill"})))
      assert_receive {:joined, "test:kill", _, channel}
      old = Process.whereis(SupervisedEndpoint)

      capture_log(fn -> kill(old) end)

      assert_restart_close(c, "test:kill")

      assert eventually(fn -> not Process.alive?(channel) end)
      assert eventually(fn -> Process.whereis(SupervisedEndpoint) not in [nil, old] and child(:dispatcher) != nil end)
      assert SupervisedEndpoint.port() == port
      c = connect!(port)
      push(c, client(:v2, "1", "1", "test:kill", "phx_join", "{}"))
      assert_frame(c, reply(:v2, "1", "1", "test:kill", "ok", ~s({"topic":"test:kill"})))
    end

    test "a kill of the channel supervisor restarts the dispatcher with it, on the same port" do
      port = SupervisedEndpoint.port()
      c = connect!(port)
      push(c, client(:v2, "1", "1", "test:channels", "phx_join", "{}"))
      assert_frame(c, reply(:v2, "1", "1", "test:channels", "ok", ~s({"topic":"test:channels"})))
      dispatcher = child(:dispatcher)

      capture_log(fn -> kill(child(:channels)) end)

      assert_restart_close(c, "test:channels")
      await_dispatcher_other_than(dispatcher)
      assert SupervisedEndpoint.port() == port
      c = connect!(port)
      push(c, client(:v2, "1", "1", "test:channels", "phx_join", "{}"))
      assert_frame(c, reply(:v2, "1", "1", "test:channels", "ok", ~s({"topic":"test:channels"})))
    end
  end

  # The client's channel on `topic` dies with the tree, a crash: its phx_error may come
  # before the 1012 close that the dispatcher's death sends (the close does not wait
  # behind it); either way the client reconnects and rejoins.
  defp assert_restart_close(c, topic) do
    phx_error = server(:v2, "1", "1", topic, "phx_error", ~s({"reason":"channel_crash"}))

    case WSClient.recv(c) do
      {^phx_error, c} -> assert {{:close, 1012, "server restart"}, _} = WSClient.recv(c)
      other -> assert {{:close, 1012, "server restart"}, _} = other
    end
  end
end
