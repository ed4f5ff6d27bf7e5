defmodule Fenix.ChannelTestTest do
  # Fenix.ChannelTest itself, on the test app's channels (test/support/test_app.ex).
  use ExUnit.Case, async: true

  import Fenix.ChannelTest

  alias Fenix.Socket.Broadcast

  @endpoint Fenix.TestEndpoint

  defp unique(prefix), do: "#{prefix}:#{System.unique_integer([:positive])}"

  defp test_socket, do: socket(Fenix.TestSocket, "user:ann", %{test_pid: self(), user_id: "ann"})

  describe "socket/1,3,4 and connect/2,3" do
    test "socket/3 builds what connect/3 would have, on @endpoint" do
      socket = socket(Fenix.TestSocket, "user:1", %{a: 1})
      assert %Fenix.Socket{endpoint: Fenix.TestEndpoint, handler: Fenix.TestSocket, id: "user:1", assigns: %{a: 1}} = socket
      assert socket(Fenix.TestSocket).assigns == %{}
      assert socket(Fenix.TestSocket, nil, [a: 2], endpoint: GenAppWeb.Endpoint).endpoint == GenAppWeb.Endpoint
    end

    test "connect/3 runs the socket's connect/3 and id/1 with string keys" do
      params = %{test_pid: :erlang.pid_to_list(self()) |> to_string(), user_id: "bob"}
      assert {:ok, socket} = connect(Fenix.TestSocket, params)
      assert socket.id == "user:bob"
      assert socket.assigns.user_id == "bob"
      assert_receive {:connect_info, %{}}

      assert {:ok, _} = connect(Fenix.TestSocket, params, connect_info: %{peer_data: :here})
      assert_receive {:connect_info, %{peer_data: :here}}
      assert {:ok, _} = connect(Fenix.TestSocket, params, %{x_headers: []})
      assert_receive {:connect_info, %{x_headers: []}}

      assert connect(Fenix.TestSocket, %{"deny" => "error"}) == {:error, :denied}
    end
  end

  describe "join" do
    test "join/3 answers the channel's reply and socket; the channel runs as in production" do
      topic = unique("test:join")
      assert {:ok, %{topic: ^topic}, socket} = join(test_socket(), topic, %{"n" => 1, atom: :key})
      assert_receive {:joined, ^topic, %{"n" => 1, "atom" => :key}, pid}
      assert socket.channel_pid == pid and socket.joined and socket.topic == topic
      assert {:links, links} = Process.info(self(), :links)
      assert pid in links
    end

    test "refused, crashed and unrouted joins" do
      assert join(test_socket(), "test:refuse") == {:error, %{reason: "nope"}}
      assert join(test_socket(), "test:bad_return") == {:error, %{reason: "join crashed"}}
      assert_raise RuntimeError, ~r/no channel found for topic "nowhere"/, fn -> join(test_socket(), "nowhere") end
      assert_raise RuntimeError, ~r/could not join channel, got error: %{reason: "nope"}/, fn ->
        subscribe_and_join!(test_socket(), "test:refuse")
      end
    end

    test "join/4 takes the channel; routes add their assigns" do
      assert {:ok, _, socket} = join(test_socket(), Fenix.TestChannel, unique("anything"), %{})
      assert socket.channel == Fenix.TestChannel
      assert {:ok, _, socket} = join(test_socket(), unique("assigned:x"))
      assert %{route: "assigned", user_id: "from route"} = socket.assigns
    end
  end

  describe "push, replies and pushes" do
    setup do
      %{socket: subscribe_and_join!(test_socket(), unique("test:push"))}
    end

    test "assert_reply/2,3,4 and refute_reply", %{socket: socket} do
      ref = push(socket, "ping", %{hello: "there"})
      assert_reply ref, :ok, %{"hello" => "there"}
      ref = push(socket, "status_only")
      assert_reply ref, :ok
      ref = push(socket, "custom_status", %{"why" => 1})
      assert_reply ref, :unauthorized, %{"why" => n} when n > 0
      refute_reply ref, :ok

      ref = push(socket, "reply_later")
      assert_receive {:socket_ref, socket_ref}
      :ok = Fenix.Channel.reply(socket_ref, {:ok, %{later: true}})
      assert_reply ref, :ok, %{later: true}, 500
    end

    test "assert_push/3 matches pushes as the channel made them, with guards; refute_push", %{socket: socket} do
      send(socket.channel_pid, {:push, "atoms", %{key: :value, n: 3}})
      assert_push "atoms", %{key: :value, n: n} when n > 2
      send(socket.channel_pid, {:push, "bin", {:binary, <<1, 2>>}})
      assert_push "bin", {:binary, <<1, 2>>}
      refute_push "atoms", _
    end

    test "broadcasts: the channel's reach the test's subscription; broadcast_from reaches the channel", %{socket: socket} do
      push(socket, "broadcast", %{"x" => 1})
      assert_broadcast "b", %{"x" => 1}
      # The channel's own broadcast comes back to its client too, as over a socket.
      assert_push "b", %{"x" => 1}

      push(socket, "broadcast_from", %{"y" => 2})
      assert_broadcast "b", %{"y" => 2}
      refute_push "b", %{"y" => 2}

      broadcast_from!(socket, "news", %{"z" => 3})
      assert_push "news", %{"z" => 3}
      refute_broadcast "news", _

      # An intercepted event goes through handle_out/3.
      :ok = broadcast_from(socket, "out", %{"o" => 4})
      assert_receive {:handle_out, %{"o" => 4}}
      assert_push "out", %{"o" => 4, "by" => "ann"}
    end

    test "presence: the channel's push_state/1 and list pushes come as terms", %{socket: socket} do
      {:ok, ref} = Fenix.TestPresence.track(self(), socket.topic, "ann", %{name: "Ann"})
      push(socket, "push_state", %{"fetch" => false})
      assert_push "presence_state", %{"ann" => %{metas: [%{name: "Ann", phx_ref: ^ref}]}}
      push(socket, "presence_state", %{"then" => "nothing"})
      assert_push "presence_state", %{"ann" => %{metas: [%{phx_ref: ^ref}]}}
      assert_push "presence_diff", %{joins: %{"ann" => _}}, 1_000
    end
  end

  describe "leave and close" do
    test "leave/1 is replied :ok and the channel stops {:shutdown, :left}" do
      socket = subscribe_and_join!(test_socket(), unique("test:leave"))
      Process.unlink(socket.channel_pid)
      ref = leave(socket)
      assert_reply ref, :ok
      pid = socket.channel_pid
      assert_receive {:socket_close, ^pid, {:shutdown, :left}}
      assert_receive {:terminate, _, {:shutdown, :left}}
    end

    test "close/1 returns once the channel has terminated" do
      socket = subscribe_and_join!(test_socket(), unique("test:close"))
      assert close(socket) == :ok
      refute Process.alive?(socket.channel_pid)
      assert_received {:terminate, _, {:shutdown, :closed}}
    end

    test "a channel that crashes takes the linked test process down, as in Phoenix" do
      Process.flag(:trap_exit, true)
      socket = subscribe_and_join!(test_socket(), unique("test:crash"))
      push(socket, "raise")
      pid = socket.channel_pid
      assert_receive {:EXIT, ^pid, {%RuntimeError{message: "handle_in crashed on purpose"}, _}}, 2_000
    end

    test "the channel stops when the test process is gone" do
      test = self()

      spawn(fn ->
        socket = subscribe_and_join!(test_socket(), unique("test:orphan"))
        send(test, {:channel, socket.channel_pid})
      end)

      assert_receive {:channel, pid}
      ref = Process.monitor(pid)
      assert_receive {:DOWN, ^ref, _, _, _}
    end
  end

  test "assert_broadcast/3 sees what any broadcast to a subscribed topic carries" do
    topic = unique("test:any")
    _socket = subscribe_and_join!(test_socket(), topic)
    :ok = Fenix.TestEndpoint.broadcast(topic, "from_elsewhere", %{a: 1})
    assert_broadcast "from_elsewhere", %{a: 1}
    assert_push "from_elsewhere", %{a: 1}
    refute_received %Broadcast{}
  end
end
