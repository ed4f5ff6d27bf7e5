defmodule Fenix.Socket.TransportTest do
  # The Fenix.Socket.Transport API over a real WebSocket: Fenix.TestTransport
  # (test/support/test_transport.ex) mounted on the test endpoint at /transport.
  use ExUnit.Case, async: true

  import Fenix.Test.Client, only: [port: 0, eventually: 1]

  alias Fenix.Test.WSClient

  # Connects to `path` with `params` (the test pid added); returns the client and,
  # once init/1 ran, the connection's process.
  defp open(params \\ %{}, path \\ "/transport") do
    {:ok, client, _headers} = WSClient.connect(port(), "#{path}/websocket?" <> query(params))
    assert_receive {:transport_init, pid}
    {client, pid}
  end

  defp query(params), do: params |> Map.put("test_pid", to_string(:erlang.pid_to_list(self()))) |> URI.encode_query()

  defp send_text(client, text) do
    :ok = WSClient.send_text(client, text)
    client
  end

  defp expect(client, frame) do
    {got, client} = WSClient.recv(client)
    assert got == frame
    client
  end

  describe "connect/1" do
    test "gets the endpoint, the transport, the socket's options, the params and the connect info" do
      {client, _pid} = open(%{"user" => "u1"})
      assert_receive {:transport_connect, info, connect_pid}
      assert %{endpoint: Fenix.TestEndpoint, transport: :websocket, params: %{"user" => "u1"}} = info
      assert info.options == [max_frame_size: 4096, max_unhandled_messages: 4, connect_info: [:peer_data, region: "test"]]
      assert %{peer_data: %{address: {127, 0, 0, 1}}, region: "test"} = info.connect_info
      # Run in a process of its own, not the connection's.
      refute_received {:transport_init, ^connect_pid}
      WSClient.close(client)
    end

    for deny <- ["error", "plain", "raise", "bad"] do
      test "refusing (#{deny}) answers the upgrade 403, as Phoenix does" do
        path = "/transport/websocket?" <> query(%{"deny" => unquote(deny)})
        assert {:error, {:http, 403, _headers}} = WSClient.connect(port(), path)
        refute_received {:transport_init, _}
      end
    end

    test "the params' vsn means nothing to a transport" do
      {client, _pid} = open(%{"vsn" => "9.9.9"})
      client |> send_text("hi") |> expect({:text, "echo:hi"})
      WSClient.close(client)
    end
  end

  describe "child_spec/1" do
    test "is started under the endpoint's supervisor with the endpoint and the socket's options" do
      options = Agent.get(Fenix.TestTransport.options_name(Fenix.TestEndpoint), & &1)
      assert options[:endpoint] == Fenix.TestEndpoint
      assert options[:websocket][:max_frame_size] == 4096
      {:sockets, sockets, :supervisor, _} = List.keyfind(Supervisor.which_children(Fenix.TestEndpoint), :sockets, 0)
      assert [{Fenix.TestTransport, _pid, :worker, _}] = Supervisor.which_children(sockets)
    end
  end

  describe "the connection's process" do
    test "runs init/1, then the callbacks, under the endpoint's supervisor" do
      {client, pid} = open()
      {:engine, engine, :supervisor, _} = List.keyfind(Supervisor.which_children(Fenix.TestEndpoint), :engine, 0)
      {:channels, channels, :supervisor, _} = List.keyfind(Supervisor.which_children(engine), :channels, 0)
      assert Enum.any?(DynamicSupervisor.which_children(channels), &match?({_, ^pid, :worker, _}, &1))
      WSClient.close(client)
    end

    test "handle_info/2 gets other messages, from any process, and can push" do
      {client, pid} = open()
      send(pid, :hello)
      assert_receive {:transport_info, :hello}
      spawn(fn -> send(pid, {:push, {:text, "from elsewhere"}}) end)
      client = expect(client, {:text, "from elsewhere"})
      send(pid, {:push, {:binary, <<0, 255>>}})
      expect(client, {:binary, <<0, 255>>})
      WSClient.close(client)
    end
  end

  describe "handle_in/2" do
    test "gets text and binary messages with their opcode" do
      {client, _pid} = open()
      client = client |> send_text("héllo") |> expect({:text, "echo:héllo"})
      :ok = WSClient.send_binary(client, <<1, 2, 3>>)
      expect(client, {:binary, <<1, 2, 3>>})
    end

    test "{:ok, state} sends nothing and keeps the state" do
      {client, _pid} = open()
      client |> send_text("ok") |> send_text("ok") |> send_text("count") |> expect({:text, "2"})
    end

    test "{:reply, status, frame, state} sends the frame whatever the status" do
      {client, _pid} = open()
      client = client |> send_text("reply") |> expect({:text, "replied"})
      client |> send_text("reply_error") |> expect({:binary, <<1, 2>>})
    end

    test "{:push, frame, state} sends iodata as one message" do
      {client, _pid} = open()
      client |> send_text("push_iodata") |> expect({:text, "iodata"})
    end

    test "a fragmented message arrives whole" do
      {client, _pid} = open()
      :ok = WSClient.send_frame(client, 0x1, "frag", false)
      :ok = WSClient.send_frame(client, 0x0, "men", false)
      :ok = WSClient.send_frame(client, 0x0, "ted", true)
      expect(client, {:text, "echo:fragmented"})
    end
  end

  describe "stopping" do
    for {command, code, reason} <- [{"stop", 1000, :normal}, {"stop_shutdown", 1000, {:shutdown, :bye}}, {"stop_abnormal", 1011, :oops}] do
      test "#{command}: {:stop, #{inspect(reason)}, state} closes with #{code}, after what was sent, and terminate/2 gets the reason" do
        {client, pid} = open()
        ref = Process.monitor(pid)
        client = client |> send_text("reply") |> send_text(unquote(command))
        client = expect(client, {:text, "replied"})
        {{:close, code, _reason}, _client} = WSClient.recv(client)
        assert code == unquote(code)
        assert_receive {:transport_terminate, unquote(Macro.escape(reason))}
        # Any reason: the engine's messages may overtake the monitor request (:noproc).
        assert_receive {:DOWN, ^ref, :process, ^pid, _}
      end
    end

    test "a crash closes with 1011, and terminate/2 gets the crash" do
      {client, _pid} = open()
      {{:close, 1011, _}, _client} = client |> send_text("raise") |> WSClient.recv()
      assert_receive {:transport_terminate, {%RuntimeError{message: "handle_in crashed on purpose"}, _stack}}
    end

    test "an invalid return raises, listing the shapes: 1011" do
      {client, _pid} = open()
      {{:close, 1011, _}, client} = client |> send_text("bad_return") |> WSClient.recv()
      assert_receive {:transport_terminate, {%ArgumentError{message: message}, _stack}}
      assert message =~ "{:push, {:text | :binary, iodata}, state}"
      assert message =~ "got :what"
      {client2, _pid} = open()
      {{:close, 1011, _}, _} = client2 |> send_text("bad_opcode") |> WSClient.recv()
      WSClient.close(client)
    end

    test "a killed process closes the connection with 1011: never orphaned" do
      {client, pid} = open()
      Process.exit(pid, :kill)
      assert {{:close, 1011, "transport process exited"}, _client} = WSClient.recv(client)
    end
  end

  describe "terminate/2 when the connection ends" do
    test "a client's close: :closed, and the close is answered with its code" do
      {client, pid} = open()
      ref = Process.monitor(pid)
      :ok = WSClient.send_frame(client, 0x8, <<4001::16, "bye">>)
      assert {{:close, 4001, ""}, _client} = WSClient.recv(client)
      assert_receive {:transport_terminate, :closed}
      assert_receive {:DOWN, ^ref, :process, ^pid, _}
    end

    test "a client that goes away: :closed" do
      {client, _pid} = open()
      WSClient.close(client)
      assert_receive {:transport_terminate, :closed}
    end

    test "the idle timeout: :timeout" do
      {client, _pid} = open(%{}, "/transport-short")
      assert {{:close, 1002, _}, _client} = WSClient.recv(client)
      assert_receive {:transport_terminate, :timeout}
    end

    test "a message over max_frame_size: closed 1009, {:error, 1009}" do
      {client, _pid} = open()
      :ok = WSClient.send_binary(client, :binary.copy(<<7>>, 4097))
      assert {{:close, 1009, _}, _client} = WSClient.recv(client)
      assert_receive {:transport_terminate, {:error, 1009}}
    end

    test "a text message that is not UTF-8: closed 1007, {:error, 1007}" do
      {client, _pid} = open()
      :ok = WSClient.send_frame(client, 0x1, <<0xC3, 0x28>>)
      assert {{:close, 1007, _}, _client} = WSClient.recv(client)
      assert_receive {:transport_terminate, {:error, 1007}}
    end
  end

  describe "handle_control/2" do
    test "gets pings (which the engine answers) and pongs, nil for no payload" do
      {client, _pid} = open()
      :ok = WSClient.send_frame(client, 0x9, "are you there")
      client = expect(client, {:pong, "are you there"})
      assert_receive {:transport_control, :ping, "are you there"}
      :ok = WSClient.send_frame(client, 0xA, "")
      assert_receive {:transport_control, :pong, nil}
      WSClient.close(client)
    end

    test "a module without it never sees control frames; pings are still answered" do
      {:ok, client, _} = WSClient.connect(port(), "/transport-plain/websocket")
      :ok = WSClient.send_frame(client, 0x9, "p")
      client = expect(client, {:pong, "p"})
      :ok = WSClient.send_frame(client, 0xA, "q")
      client |> send_text("still here") |> expect({:text, "still here"})
    end
  end

  describe "backpressure" do
    test "a client that sends faster than handle_in/2 is not read: the mailbox stays bounded" do
      {client, pid} = open()
      client = send_text(client, "block")
      assert_receive {:blocked, ^pid}
      for i <- 1..200, do: send_text(client, "m#{i}")
      # The socket allows 4 unhandled messages ("block" is one): 3 more are handed
      # over, and the rest waits in the kernel, not in the mailbox.
      queued = fn -> pid |> Process.info(:message_queue_len) |> elem(1) end
      assert eventually(fn -> queued.() == 3 end)
      Process.sleep(200)
      assert queued.() == 3
      send(pid, :release)
      client = Enum.reduce(1..200, client, fn i, client -> expect(client, {:text, "echo:m#{i}"}) end)
      WSClient.close(client)
    end
  end

  test "the endpoint refuses a module that is neither a socket nor a transport" do
    defmodule NotASocket do
      @moduledoc false
    end

    defmodule BadEndpoint do
      @moduledoc false
      use Fenix.Endpoint, otp_app: :fenix
      socket "/bad", NotASocket
    end

    # Found before anything starts.
    assert_raise ArgumentError, ~r/NotASocket is neither a Fenix.Socket/, fn -> BadEndpoint.start_link(http: [port: 0]) end
    assert Process.whereis(BadEndpoint) == nil
  end
end
