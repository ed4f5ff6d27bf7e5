defmodule Fenix.ChannelCallbacksTest do
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.Test.WSClient

  for vsn <- [:v1, :v2] do
    describe "join (#{vsn})" do
      @vsn vsn

      test "replies ok with the join reply and passes the payload" do
        c = connect!(%{"vsn" => vsn(@vsn)})
        push(c, client(@vsn, "1", "1", "test:a", "phx_join", ~s({"k":"v"})))
        assert_receive {:joined, "test:a", %{"k" => "v"}, _pid}
        assert_frame(c, reply(@vsn, "1", "1", "test:a", "ok", ~s({"topic":"test:a"})))
      end

      test "replies error when join/3 refuses" do
        c = connect!(%{"vsn" => vsn(@vsn)})
        push(c, client(@vsn, "1", "1", "test:refuse", "phx_join", "{}"))
        assert_frame(c, reply(@vsn, "1", "1", "test:refuse", "error", ~s({"reason":"nope"})))
      end

      test "an invalid join/3 return is a crash: join crashed" do
        c = connect!(%{"vsn" => vsn(@vsn)})
        push(c, client(@vsn, "1", "1", "test:bad_return", "phx_join", "{}"))
        assert_frame(c, reply(@vsn, "1", "1", "test:bad_return", "error", ~s({"reason":"join crashed"})))
      end

      test "a topic no channel matches: unmatched topic" do
        c = connect!(%{"vsn" => vsn(@vsn)})
        push(c, client(@vsn, "1", "1", "nowhere", "phx_join", "{}"))
        # As Phoenix's socket answers it: no join_ref.
        assert_frame(c, reply(@vsn, nil, "1", "nowhere", "error", ~s({"reason":"unmatched topic"})))
      end

      test "channel/3's assigns: are merged into the socket's for its joins" do
        c = connect!(%{"vsn" => vsn(@vsn), "user_id" => "u1"})
        push(c, client(@vsn, "1", "1", "assigned:x", "phx_join", "{}"))
        assert_receive {:joined, "assigned:x", _, pid}
        assert %{route: "assigned", user_id: "from route", test_pid: _} = GenServer.call(pid, :assigns)
        push(c, client(@vsn, "2", "2", "test:plain", "phx_join", "{}"))
        assert_receive {:joined, "test:plain", _, plain}
        assert %{user_id: "u1"} = assigns = GenServer.call(plain, :assigns)
        refute Map.has_key?(assigns, :route)
      end

      test "an exact channel route matches only its topic" do
        c = connect!(%{"vsn" => vsn(@vsn)})
        push(c, client(@vsn, "1", "1", "exact", "phx_join", "{}"))
        assert_frame(c, reply(@vsn, "1", "1", "exact", "ok", ~s({"topic":"exact"})))
      end

      test "the channel cap refuses further joins" do
        c = connect!(%{"vsn" => vsn(@vsn)})

        c =
          Enum.reduce(1..5, c, fn i, c ->
            push(c, client(@vsn, "#{i}", "#{i}", "test:#{i}", "phx_join", "{}"))
            assert_frame(c, reply(@vsn, "#{i}", "#{i}", "test:#{i}", "ok", ~s({"topic":"test:#{i}"})))
          end)

        push(c, client(@vsn, "6", "6", "test:6", "phx_join", "{}"))
        assert_frame(c, reply(@vsn, "6", "6", "test:6", "error", ~s({"reason":"too many channels joined"})))
      end
    end

    describe "handle_in and replies (#{vsn})" do
      @vsn vsn

      setup do
        c = connect!(%{"vsn" => vsn(@vsn), "user_id" => "u1"})
        push(c, client(@vsn, "1", "1", "test:r", "phx_join", ~s({"n":1})))
        assert_receive {:joined, "test:r", _, pid}
        %{c: assert_frame(c, reply(@vsn, "1", "1", "test:r", "ok", ~s({"topic":"test:r"}))), pid: pid}
      end

      test "{:reply, {:ok, payload}, socket}", %{c: c} do
        push(c, client(@vsn, "1", "2", "test:r", "ping", ~s({"a":[1,2.5,null,true,"x"]})))
        assert_frame(c, reply(@vsn, "1", "2", "test:r", "ok", ~s({"a":[1,2.5,null,true,"x"]})))
      end

      test "{:reply, :ok, socket} replies with an empty response", %{c: c} do
        push(c, client(@vsn, "1", "2", "test:r", "status_only", "{}"))
        assert_frame(c, reply(@vsn, "1", "2", "test:r", "ok", "{}"))
      end

      test "{:reply, {status, payload}, socket} with a status of the application's own", %{c: c} do
        push(c, client(@vsn, "1", "2", "test:r", "custom_status", ~s({"why":"no"})))
        assert_frame(c, reply(@vsn, "1", "2", "test:r", "unauthorized", ~s({"why":"no"})))
      end

      test "assigns made in join/3 are kept", %{c: c} do
        push(c, client(@vsn, "1", "2", "test:r", "assigns", "{}"))
        assert_frame(c, reply(@vsn, "1", "2", "test:r", "ok", ~s({"joined_with":{"n":1}})))
      end

      test "reply/2 with a socket_ref, from another process", %{c: c} do
        push(c, client(@vsn, "1", "7", "test:r", "reply_later", "{}"))
        assert_receive {:socket_ref, ref}
        Task.await(Task.async(fn -> Fenix.Channel.reply(ref, {:error, %{later: true}}) end))
        assert_frame(c, reply(@vsn, "1", "7", "test:r", "error", ~s({"later":true})))
      end

      test "handle_call/3: a reply now, a reply later, a stop", %{c: c, pid: pid} do
        assert %{joined_with: %{"n" => 1}, user_id: "u1"} = GenServer.call(pid, :assigns)
        later = Task.async(fn -> GenServer.call(pid, :later) end)
        assert eventually(fn -> Map.has_key?(GenServer.call(pid, :assigns), :caller) end)
        assert GenServer.call(pid, :answer) == :ok
        assert Task.await(later) == :answered_later
        ref = Process.monitor(pid)
        catch_exit(GenServer.call(pid, :stop))
        assert_receive {:DOWN, ^ref, _, _, {:shutdown, :called}}
        assert_receive {:terminate, "test:r", {:shutdown, :called}}
        assert_frame(c, server(@vsn, "1", "1", "test:r", "phx_close", "{}"))
      end

      test "handle_cast/2", %{c: c, pid: pid} do
        GenServer.cast(pid, {:push, "cast", %{"x" => 2}})
        assert_frame(c, server(@vsn, "1", nil, "test:r", "cast", ~s({"x":2})))
      end

      test "push/3 from handle_info/2", %{c: c, pid: pid} do
        send(pid, {:push, "news", %{"x" => 1}})
        assert_frame(c, server(@vsn, "1", nil, "test:r", "news", ~s({"x":1})))
      end

      test "a push to a topic not joined: unmatched topic", %{c: c} do
        push(c, client(@vsn, nil, "5", "test:never", "ping", "{}"))
        assert_frame(c, reply(@vsn, nil, "5", "test:never", "error", ~s({"reason":"unmatched topic"})))
      end

      test "a message with a stale join_ref is dropped; a null join_ref is accepted", %{c: c} do
        push(c, client(@vsn, "0", "5", "test:r", "ping", "{}"))
        c = refute_frame(c)
        push(c, client(@vsn, nil, "6", "test:r", "ping", "{}"))
        assert_frame(c, reply(@vsn, "1", "6", "test:r", "ok", "{}"))
      end

      test "refs of any JSON value: the channel sees them as Phoenix decodes them, replies carry them back", %{c: c} do
        push(c, client(@vsn, "1", "2", "test:r", "refs", "{}"))
        assert_receive {:refs, "1", "2"}
        c = assert_frame(c, reply(@vsn, "1", "2", "test:r", "ok", "{}"))

        for {wire, term} <- [{7, 7}, {{:json, "2.5"}, 2.5}, {{:json, ~s({"id":[1,"a"]})}, %{"id" => [1, "a"]}}, {nil, nil}] do
          push(c, client(@vsn, "1", wire, "test:r", "refs", "{}"))
          assert_receive {:refs, "1", ^term}
          assert_frame(c, reply(@vsn, "1", wire, "test:r", "ok", "{}"))
        end
      end

      test "a number join_ref is an integer in the channel, and stays a number on the wire" do
        c = connect!(%{"vsn" => vsn(@vsn), "user_id" => "u1"})
        push(c, client(@vsn, 3, 0, "test:n", "phx_join", "{}"))
        assert_receive {:joined, "test:n", _, pid}
        c = assert_frame(c, reply(@vsn, 3, 0, "test:n", "ok", ~s({"topic":"test:n"})))
        push(c, client(@vsn, 3, 1, "test:n", "refs", "{}"))
        assert_receive {:refs, 3, 1}
        c = assert_frame(c, reply(@vsn, 3, 1, "test:n", "ok", "{}"))
        # Compared as values: "3" is another join_ref than 3.
        push(c, client(@vsn, "3", 2, "test:n", "refs", "{}"))
        c = refute_frame(c)
        push(c, client(@vsn, 3, 3, "test:n", "reply_later", "{}"))
        assert_receive {:socket_ref, ref}
        Task.await(Task.async(fn -> Fenix.Channel.reply(ref, {:ok, %{later: true}}) end))
        c = assert_frame(c, reply(@vsn, 3, 3, "test:n", "ok", ~s({"later":true})))
        send(pid, {:push, "news", %{"x" => 1}})
        c = assert_frame(c, server(@vsn, 3, nil, "test:n", "news", ~s({"x":1})))
        push(c, client(@vsn, 3, 4, "test:n", "phx_leave", "{}"))
        c = assert_frame(c, reply(@vsn, 3, 4, "test:n", "ok", "{}"))
        assert_frame(c, server(@vsn, 3, 3, "test:n", "phx_close", "{}"))
      end

      test "phx_leave: reply ok, phx_close, terminate {:shutdown, :left}", %{c: c} do
        push(c, client(@vsn, "1", "3", "test:r", "phx_leave", "{}"))
        c = assert_frame(c, reply(@vsn, "1", "3", "test:r", "ok", "{}"))
        assert_frame(c, server(@vsn, "1", "1", "test:r", "phx_close", "{}"))
        assert_receive {:terminate, "test:r", {:shutdown, :left}}
      end

      test "{:stop, reason, socket}: phx_close and terminate", %{c: c} do
        push(c, client(@vsn, "1", "3", "test:r", "stop_shutdown", "{}"))
        assert_frame(c, server(@vsn, "1", "1", "test:r", "phx_close", "{}"))
        assert_receive {:terminate, "test:r", {:shutdown, :bye}}
      end

      test "{:stop, reason, reply, socket}: the reply, then phx_close", %{c: c} do
        push(c, client(@vsn, "1", "3", "test:r", "stop_reply", "{}"))
        c = assert_frame(c, reply(@vsn, "1", "3", "test:r", "ok", ~s({"bye":true})))
        assert_frame(c, server(@vsn, "1", "1", "test:r", "phx_close", "{}"))
      end

      test "a crash sends phx_error; the connection's other channels carry on", %{c: c} do
        push(c, client(@vsn, "2", "2", "test:other", "phx_join", "{}"))
        c = assert_frame(c, reply(@vsn, "2", "2", "test:other", "ok", ~s({"topic":"test:other"})))

        for event <- ["raise", "bad_return", "bad_payload", "stop_abnormal"] do
          ExUnit.CaptureLog.capture_log(fn ->
            push(c, client(@vsn, "2", "3", "test:other", "phx_join", "{}"))
            push(c, client(@vsn, "1", "4", "test:r", event, "{}"))
            Process.sleep(50)
          end)
        end

        # Each crash ended the channel; its rejoin keeps working afterwards.
        {frames, _c} = drain(c)
        assert server(@vsn, "1", "1", "test:r", "phx_error", ~s({"reason":"channel_crash"})) in frames
        assert reply(@vsn, "2", "3", "test:other", "ok", ~s({"topic":"test:other"})) in frames
      end

      test "connection close: terminate {:shutdown, :closed}", %{c: c} do
        WSClient.close(c)
        assert_receive {:terminate, "test:r", {:shutdown, :closed}}
      end

      test "duplicate join: new reply, phx_close of the old join_ref, terminate", %{c: c} do
        push(c, client(@vsn, "9", "9", "test:r", "phx_join", "{}"))
        c = assert_frame(c, reply(@vsn, "9", "9", "test:r", "ok", ~s({"topic":"test:r"})))
        assert_frame(c, server(@vsn, "1", "1", "test:r", "phx_close", "{}"))
        assert_receive {:terminate, "test:r", {:shutdown, :duplicate_join}}
      end
    end

    describe "broadcasts (#{vsn})" do
      @vsn vsn

      setup do
        # A topic of its own, and both channels fan-out targets before the test starts.
        topic = "test:room#{System.unique_integer([:positive])}"

        [a, b] =
          for user <- ["a", "b"] do
            c = connect!(%{"vsn" => vsn(@vsn), "user_id" => user})
            push(c, client(@vsn, "1", "1", topic, "phx_join", "{}"))
            assert_frame(c, reply(@vsn, "1", "1", topic, "ok", ~s({"topic":"#{topic}"})))
          end

        engine = Fenix.Endpoint.engine!(Fenix.TestEndpoint)
        assert eventually(fn -> elem(Fenix.Native.endpoint_subscribers(engine, topic), 1) == 2 end)
        %{a: a, b: b, topic: topic}
      end

      test "broadcast!/3 reaches every subscriber, sender included", %{a: a, b: b, topic: topic} do
        push(a, client(@vsn, "1", "2", topic, "broadcast", ~s({"m":1})))
        assert_frame(a, server(@vsn, nil, nil, topic, "b", ~s({"m":1})))
        assert_frame(b, server(@vsn, nil, nil, topic, "b", ~s({"m":1})))
      end

      test "broadcast_from!/3 skips the sender", %{a: a, b: b, topic: topic} do
        push(a, client(@vsn, "1", "2", topic, "broadcast_from", ~s({"m":2})))
        assert_frame(b, server(@vsn, nil, nil, topic, "b", ~s({"m":2})))
        refute_frame(a)
      end

      test "Endpoint.broadcast/3, in order", %{a: a, topic: topic} do
        for i <- 1..50, do: :ok = Fenix.TestEndpoint.broadcast(topic, "n", %{i: i})
        Enum.reduce(1..50, a, fn i, a -> assert_frame(a, server(@vsn, nil, nil, topic, "n", ~s({"i":#{i}}))) end)
      end

      test "an intercepted event goes through handle_out/3 of each subscriber", %{a: a, b: b, topic: topic} do
        :ok = Fenix.TestEndpoint.broadcast(topic, "out", %{"x" => 1})
        assert_receive {:handle_out, %{"x" => 1}}
        assert_receive {:handle_out, %{"x" => 1}}
        assert_frame(a, server(@vsn, "1", nil, topic, "out", ~s({"by":"a","x":1})))
        assert_frame(b, server(@vsn, "1", nil, topic, "out", ~s({"by":"b","x":1})))
      end
    end
  end

  test "binary payloads: {:binary, data} is pushed as a binary frame (vsn 2.0.0)" do
    c = connect!(%{"vsn" => "2.0.0"})
    push(c, client(:v2, "1", "1", "test:bin", "phx_join", "{}"))
    assert_receive {:joined, "test:bin", _, pid}
    c = assert_frame(c, reply(:v2, "1", "1", "test:bin", "ok", ~s({"topic":"test:bin"})))
    send(pid, {:push, "data", {:binary, <<1, 2, 3>>}})
    assert_frame(c, {:binary, <<0, 1, 8, 4, "1", "test:bin", "data", 1, 2, 3>>})
  end

  describe "binary frames (vsn 2.0.0)" do
    setup do
      c = connect!(%{"vsn" => "2.0.0"})
      push(c, client(:v2, 3, 1, "test:bin", "phx_join", "{}"))
      assert_receive {:joined, "test:bin", _, pid}
      %{c: assert_frame(c, reply(:v2, 3, 1, "test:bin", "ok", ~s({"topic":"test:bin"}))), pid: pid}
    end

    test "a binary reply to number refs carries their text, as Phoenix's to_string/1 writes it", %{c: c} do
      push(c, client(:v2, 3, 14, "test:bin", "binary_reply", "{}"))
      assert_frame(c, {:binary, <<1, 1, 2, 8, 2, "3", "14", "test:bin", "ok", 1, 2>>})
    end

    test "a binary reply to a ref that is a map cannot be sent: the channel crashes, as in Phoenix", %{c: c} do
      push(c, client(:v2, 3, {:json, ~s({"a":1})}, "test:bin", "binary_reply", "{}"))
      assert_frame(c, server(:v2, 3, 3, "test:bin", "phx_error", ~s({"reason":"channel_crash"})))
    end

    test "a push whose event is over 255 bytes raises ArgumentError, and nothing is sent", %{c: c, pid: pid} do
      long = String.duplicate("é", 128)
      assert {:raised, message} = GenServer.call(pid, {:try_push, long, {:binary, <<1>>}})
      assert message =~ "event of 256 bytes does not fit a binary frame"
      c = refute_frame(c)
      # 127 two-byte characters are 254 bytes: they fit, and the length byte counts bytes.
      fits = String.duplicate("é", 127)
      assert GenServer.call(pid, {:try_push, fits, {:binary, <<1>>}}) == :ok
      assert_frame(c, {:binary, <<0, 1, 8, 254, "3", "test:bin", fits::binary, 1>>})
    end
  end

  defp drain(c, acc \\ []) do
    case WSClient.recv(c, 300) do
      {:timeout, c} -> {Enum.reverse(acc), c}
      {frame, c} -> drain(c, [frame | acc])
    end
  end
end
