defmodule Fenix.EndpointTest.ConfigEndpoint do
  # No sockets: started only to read its config back.
  use Fenix.Endpoint, otp_app: :fenix
end

defmodule Fenix.EndpointTest do
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.Test.WSClient

  test "serves static files and answers 404 for anything else" do
    assert {200, headers, body} = WSClient.http_get(port(), "/")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body =~ "fixture"
    assert {404, _, ""} = WSClient.http_get(port(), "/missing.js")
    assert {404, _, ""} = WSClient.http_get(port(), "/../mix.exs")
    assert {404, _, ""} = WSClient.http_get(port(), "/socket/longpoll")
  end

  test "a payload that JSON cannot carry is an error, and broadcast! raises" do
    assert {:error, {:unsupported_payload, _}} = Fenix.TestEndpoint.broadcast("t", "e", %{pid: self()})
    assert_raise ArgumentError, ~r/cannot be encoded/, fn -> Fenix.TestEndpoint.broadcast!("t", "e", {1, 2}) end
  end

  test "a binary broadcast whose topic or event is over 255 bytes is an error, and broadcast! raises" do
    # Byte lengths: "é" is 2 bytes, so 128 of them are 256 and 127 are 254.
    for {topic, event} <- [{String.duplicate("é", 128), "e"}, {"t", String.duplicate("x", 256)}] do
      assert {:error, {:unencodable, text}} = Fenix.TestEndpoint.broadcast(topic, event, {:binary, <<1>>})
      assert text =~ "of 256 bytes does not fit a binary frame"
      assert_raise ArgumentError, ~r/does not fit a binary frame/, fn -> Fenix.TestEndpoint.broadcast!(topic, event, {:binary, <<1>>}) end
    end

    assert Fenix.TestEndpoint.broadcast(String.duplicate("é", 127), "e", {:binary, <<1>>}) == :ok
    # A JSON payload has no such limit: text frames have no length bytes.
    assert Fenix.TestEndpoint.broadcast(String.duplicate("é", 128), "e", %{}) == :ok
  end

  test "broadcast to a topic nobody joined is fine" do
    assert :ok = Fenix.TestEndpoint.broadcast("nobody:here", "e", %{})
  end

  test "broadcast_from/4 with a channel pid skips that channel's connection" do
    [a, b] =
      for _ <- 1..2 do
        c = connect!(%{"vsn" => "2.0.0"})
        push(c, client(:v2, "1", "1", "test:from", "phx_join", "{}"))
        assert_frame(c, reply(:v2, "1", "1", "test:from", "ok", ~s({"topic":"test:from"})))
      end

    assert_receive {:joined, "test:from", _, pid_a}
    assert_receive {:joined, "test:from", _, _pid_b}
    :ok = Fenix.TestEndpoint.broadcast_from(pid_a, "test:from", "e", %{"n" => 1})
    assert_frame(b, server(:v2, nil, nil, "test:from", "e", ~s({"n":1})))
    # Which of the two is pid_a's connection depends on join order: one gets nothing.
    {frame, _} = WSClient.recv(a, 100)
    assert frame in [:timeout, server(:v2, nil, nil, "test:from", "e", ~s({"n":1}))]
  end

  test "closed connections and ended channels leave no subscription behind" do
    engine = Fenix.Endpoint.engine!(Fenix.TestEndpoint)
    subscribers = fn topic -> elem(Fenix.Native.endpoint_subscribers(engine, topic), 1) end

    clients =
      for i <- 1..3 do
        c = connect!(%{"vsn" => "2.0.0"})
        push(c, client(:v2, "1", "1", "test:leak", "phx_join", "{}"))
        c = assert_frame(c, reply(:v2, "1", "1", "test:leak", "ok", ~s({"topic":"test:leak"})))
        {i, c}
      end

    assert eventually(fn -> subscribers.("test:leak") == 3 end)
    {_, leaver} = List.keyfind(clients, 1, 0)
    push(leaver, client(:v2, "1", "2", "test:leak", "phx_leave", "{}"))
    {_, crasher} = List.keyfind(clients, 2, 0)
    push(crasher, client(:v2, "1", "2", "test:leak", "raise", "{}"))
    {_, closer} = List.keyfind(clients, 3, 0)
    WSClient.close(closer)
    assert eventually(fn -> subscribers.("test:leak") == 0 end)
  end


  test "a process told to wait goes on at :fenix_resume, and at the latest after the timeout" do
    send(self(), :fenix_resume)
    assert Fenix.Native.await_pace(:wait) == :ok
    refute_received :fenix_resume
    assert Fenix.Native.await_pace({:error, :closed}) == {:error, :closed}
  end

  test "a process that broadcasts without pause loses nothing and keeps its order" do
    c = join!(connect!(%{"vsn" => "2.0.0"}), "test:burst")
    # Fewer than the client's outbox holds (4,096 frames), which the broadcasts may fill
    # faster than this client reads.
    broadcaster = Task.async(fn -> for i <- 1..3_000, do: :ok = Fenix.TestEndpoint.broadcast("test:burst", "n", %{"i" => i}) end)
    Enum.reduce(1..3_000, c, &assert_frame(&2, server(:v2, nil, nil, "test:burst", "n", ~s({"i":#{&1}}))))
    Task.await(broadcaster, 30_000)
  end

  describe "config/2" do
    alias Fenix.EndpointTest.ConfigEndpoint

    test "reads the application config before the endpoint starts, and the start options merged over it while it runs" do
      Application.put_env(:fenix, ConfigEndpoint, secret_key_base: "from the config", tune_allocator: false)
      on_exit(fn -> Application.delete_env(:fenix, ConfigEndpoint) end)

      assert ConfigEndpoint.config(:secret_key_base) == "from the config"
      assert ConfigEndpoint.config(:http) == nil
      assert ConfigEndpoint.config(:http, []) == []

      start_supervised!({ConfigEndpoint, http: [port: 0], secret_key_base: "from start_link"})
      assert ConfigEndpoint.config(:secret_key_base) == "from start_link"
      assert ConfigEndpoint.config(:http) == [port: 0]
      assert ConfigEndpoint.config(:tune_allocator) == false

      :ok = stop_supervised(ConfigEndpoint)
      assert ConfigEndpoint.config(:secret_key_base) == "from the config"
    end
  end
end
