defmodule Fenix.LongPollTest do
  # The long-poll transport seen from the application: the socket option, connect/3
  # over long-poll (socket.transport, the auth token header), and a session's round
  # trip through the engine. The protocol itself is tested in
  # native/fenix_core/tests/longpoll.rs and with the phoenix client in test/js.
  use ExUnit.Case, async: true

  alias Fenix.Test.Client

  describe "the longpoll: socket option" do
    test "true, false or a keyword list of positive integers" do
      {_path, _module, %{longpoll: nil}, _} = Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, [])
      {_path, _module, %{longpoll: on}, _} = Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, longpoll: true)
      assert on == %{window_ms: nil, max_body_size: nil}
      {_path, _module, %{longpoll: set}, _} = Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, longpoll: [window_ms: 500])
      assert set == %{window_ms: 500, max_body_size: nil}

      assert_raise ArgumentError, ~r/window_ms longpoll option must be a positive integer/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, longpoll: [window_ms: 0])
      end

      assert_raise ArgumentError, ~r/unknown keys \[:crypto\]/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, longpoll: [crypto: []])
      end

      assert_raise ArgumentError, ~r/must be true, false or a keyword list/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, longpoll: :yes)
      end
    end
  end

  describe "a long-poll session" do
    test "runs connect/3 with transport :longpoll and the X-Phoenix-AuthToken header as the auth token" do
      query = URI.encode_query(%{"vsn" => "2.0.0", "report" => "transport", "test_pid" => to_string(:erlang.pid_to_list(self()))})
      opened = request("GET", "/lp/longpoll?" <> query, [{"x-phoenix-authtoken", "secret"}])
      assert %{"status" => 410, "messages" => [], "token" => token} = opened
      assert_receive {:connected, :longpoll, %{auth_token: "secret"}}
      # 128 random bits in URL-safe base64: the test endpoint has no secret_key_base.
      assert byte_size(token) == 22

      heartbeat = ~s([null,"1","phoenix","heartbeat",{}])
      assert request("POST", "/lp/longpoll?vsn=2.0.0&token=" <> token, [], heartbeat) == %{"status" => 200}
      reply = ~s([null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}])
      assert request("GET", "/lp/longpoll?vsn=2.0.0&token=" <> token) == %{"status" => 200, "token" => token, "messages" => [reply]}
    end

    test "a refused connect is answered 403 in the body" do
      assert request("GET", "/lp/longpoll?vsn=2.0.0&deny=error") == %{"status" => 403}
    end
  end

  # One HTTP/1.1 request on a connection of its own; the JSON answer, decoded.
  defp request(method, target, headers \\ [], body \\ "") do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", Client.port(), [:binary, active: false])
    head = for {name, value} <- headers, into: "", do: "#{name}: #{value}\r\n"

    :ok =
      :gen_tcp.send(socket, [
        "#{method} #{target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: #{byte_size(body)}\r\n",
        head,
        "\r\n",
        body
      ])

    response = read_all(socket, "")
    [_head, json] = String.split(response, "\r\n\r\n", parts: 2)
    Fenix.Test.JSON.decode!(json)
  end

  defp read_all(socket, acc) do
    case :gen_tcp.recv(socket, 0, 5_000) do
      {:ok, data} -> read_all(socket, acc <> data)
      {:error, :closed} -> acc
    end
  end
end
