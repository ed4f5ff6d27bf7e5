defmodule Fenix.Endpoint.DispatcherTest do
  # The dispatcher answers every connect and join, and when it dies the connections it
  # would have answered are closed with 1012, never left waiting.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog
  import Fenix.Test.{Frames, Supervised}
  import Fenix.Test.Client, only: [assert_frame: 2, push: 2, eventually: 1]

  alias Fenix.Test.{SupervisedEndpoint, WSClient}

  setup do
    start_supervised!({SupervisedEndpoint, http: [port: 0]})
    %{port: SupervisedEndpoint.port()}
  end

  defp join!(c, topic) do
    push(c, client(:v2, "1", "1", topic, "phx_join", "{}"))
    assert_receive {:joined, ^topic, %{}, _pid}
    assert_frame(c, reply(:v2, "1", "1", topic, "ok", ~s({"topic":"#{topic}"})))
  end

  describe "when the dispatcher is killed" do
    test "every connection is closed with 1012 and its channels stop", %{port: port} do
      a = port |> connect!() |> join!("test:a")
      b = connect!(port)

      capture_log(fn -> kill(child(:dispatcher)) end)

      assert {{:close, 1012, "server restart"}, _} = WSClient.recv(a)
      assert {{:close, 1012, "server restart"}, _} = WSClient.recv(b)
      assert_receive {:terminate, "test:a", {:shutdown, :closed}}
    end

    test "its successor serves the same port", %{port: port} do
      old = child(:dispatcher)
      capture_log(fn -> kill(old) end)
      await_dispatcher_other_than(old)

      assert SupervisedEndpoint.port() == port
      c = port |> connect!() |> join!("test:again")
      push(c, client(:v2, "1", "2", "test:again", "ping", ~s({"n":1})))
      assert_frame(c, reply(:v2, "1", "2", "test:again", "ok", ~s({"n":1})))
    end

    test "with port 0, its successor takes another port if the old one was taken meanwhile", %{port: port} do
      # The engine supervisor is held so that the port can be taken before the restart.
      old = child(:dispatcher)
      supervisor = child(:engine)
      :sys.suspend(supervisor)
      capture_log(fn -> kill(old) end)
      assert eventually(fn -> match?({:ok, _taken}, :gen_tcp.listen(port, ip: {127, 0, 0, 1})) end)
      :sys.resume(supervisor)

      await_dispatcher_other_than(old)
      assert SupervisedEndpoint.port() != port
      SupervisedEndpoint.port() |> connect!() |> join!("test:moved")
    end

    test "a join it never handled is not lost: the close answers it", %{port: port} do
      c = connect!(port)
      dispatcher = child(:dispatcher)
      :sys.suspend(dispatcher)
      push(c, client(:v2, "1", "1", "test:racing", "phx_join", "{}"))
      assert eventually(fn -> Process.info(dispatcher, :message_queue_len) == {:message_queue_len, 1} end)

      capture_log(fn -> kill(dispatcher) end)

      assert {{:close, 1012, "server restart"}, _} = WSClient.recv(c)
      refute_received {:joined, "test:racing", _, _}
    end

    test "an upgrade whose connect it never handled gets 503", %{port: port} do
      dispatcher = child(:dispatcher)
      :sys.suspend(dispatcher)
      path = "/socket/websocket?test_pid=#{:erlang.pid_to_list(self())}"
      upgrade = Task.async(fn -> WSClient.connect(port, path) end)
      assert eventually(fn -> Process.info(dispatcher, :message_queue_len) == {:message_queue_len, 1} end)

      capture_log(fn -> kill(dispatcher) end)

      assert {:error, {:http, 503, _headers}} = Task.await(upgrade)
    end
  end

  describe "a channel process that cannot be started" do
    for {topic, why} <- [{"unstartable", "its start_link fails"}, {"not_a_channel", "it has no child spec"}] do
      test "answers the join with join crashed when #{why}; the dispatcher stays up", %{port: port} do
        dispatcher = child(:dispatcher)
        c = connect!(port)

        log =
          capture_log(fn ->
            push(c, client(:v2, "1", "1", unquote(topic), "phx_join", "{}"))
            assert_frame(c, reply(:v2, "1", "1", unquote(topic), "error", ~s({"reason":"join crashed"})))
          end)

        assert log =~ "Could not start"
        assert child(:dispatcher) == dispatcher
        join!(c, "test:after")
      end
    end
  end

  test "the socket gets the serializer the engine picked from vsn", %{port: port} do
    for {query, serializer} <- [{"vsn=2.0.0", :v2}, {"vsn=1.0.0", :v1}, {"", :v1}] do
      test_pid = to_string(:erlang.pid_to_list(self()))
      {:ok, c, _} = WSClient.connect(port, "/socket/websocket?test_pid=#{test_pid}&#{query}")
      push(c, client(serializer, "1", "1", "test:vsn", "phx_join", "{}"))
      assert_receive {:joined, "test:vsn", %{}, pid}
      assert :sys.get_state(pid).serializer == serializer
      WSClient.close(c)
    end
  end

  test "an unexpected message is ignored" do
    dispatcher = child(:dispatcher)
    send(dispatcher, :unexpected)
    assert :sys.get_state(dispatcher).endpoint == SupervisedEndpoint
  end
end
