defmodule Fenix.SocketTest do
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.Test.WSClient

  describe "connect" do
    test "connect/3 gets the params and the connect info the socket asks for" do
      headers = [{"user-agent", "test-agent"}, {"X-Trace", "abc"}, {"traceparent", "00-abc-def-01"}]
      c = connect!(%{"user_id" => "u1"}, headers: headers)
      assert_receive {:connect_info, info}
      assert %{peer_data: %{address: {127, 0, 0, 1}, port: port}, user_agent: "test-agent"} = info
      assert is_integer(port)
      assert info.x_headers == [{"x-trace", "abc"}]
      assert info.trace_context_headers == [{"traceparent", "00-abc-def-01"}]
      assert [{"sec-websocket-key", _}, {"sec-websocket-version", "13"}] = Enum.sort(info.sec_websocket_headers)
      assert %URI{path: "/socket/websocket"} = info.uri
      assert info.auth_token == nil
      assert info.region == "test"
      WSClient.close(c)
    end

    test "a socket that asks for no connect info gets %{}, as in Phoenix" do
      c = connect!(%{}, path: "/short")
      assert_receive {:connect_info, info}
      assert info == %{}
      WSClient.close(c)
    end

    test "connect_info's uri has the request's scheme, host and port" do
      c = connect!(%{}, headers: [{"host", "chat.example.com:4000"}])
      assert_receive {:connect_info, %{uri: uri}}
      assert %URI{scheme: "http", host: "chat.example.com", port: 4000, path: "/socket/websocket"} = uri
      assert uri.query =~ "test_pid="
      WSClient.close(c)
    end

    test "connect_info: refuses what it does not know" do
      assert_raise ArgumentError, ~r/needs Plug sessions/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, websocket: [connect_info: [session: []]])
      end

      assert_raise ArgumentError, ~r/neither one of/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, websocket: [connect_info: [:cookies]])
      end
    end

    test "an auth token in Sec-WebSocket-Protocol reaches connect_info and phoenix is echoed" do
      params = URI.encode_query(%{"test_pid" => to_string(:erlang.pid_to_list(self()))})
      token = Base.url_encode64("s3cret", padding: false)
      headers = [{"sec-websocket-protocol", "phoenix, base64url.bearer.phx.#{token}"}]
      {:ok, _c, response_headers} = WSClient.connect(port(), "/socket/websocket?#{params}", headers)
      assert response_headers["sec-websocket-protocol"] == "phoenix"
      assert_receive {:connect_info, %{auth_token: "s3cret"}}
    end

    test "no subprotocol header when none was offered" do
      {:ok, _c, headers} = WSClient.connect(port(), "/socket/websocket?test_pid=#{:erlang.pid_to_list(self())}")
      refute Map.has_key?(headers, "sec-websocket-protocol")
      assert headers["cache-control"] == "max-age=0, private, must-revalidate"
    end

    test "{:error, reason} refuses with 403" do
      assert {:error, {:http, 403, headers}} = WSClient.connect(port(), "/socket/websocket?deny=error")
      assert headers["content-length"] == "0"
    end

    test "a crash in connect/3 refuses, and the server carries on" do
      assert {:error, {:http, 403, _}} = WSClient.connect(port(), "/socket/websocket?deny=raise")
      c = connect!()
      push(c, client(:v1, nil, "1", "phoenix", "heartbeat", "{}"))
      assert_frame(c, reply(:v1, nil, "1", "phoenix", "ok", "{}"))
    end

    test "an unsupported or unparsable vsn answers 403, as Phoenix" do
      for vsn <- ["3.0.0", "9.0.0", "two", ""] do
        assert {:error, {:http, 403, _}} = WSClient.connect(port(), "/socket/websocket?vsn=#{vsn}"), vsn
      end
    end
  end

  for vsn <- [:v1, :v2] do
    test "heartbeats are answered (#{vsn})" do
      c = connect!(%{"vsn" => vsn(unquote(vsn))})
      push(c, client(unquote(vsn), nil, "4", "phoenix", "heartbeat", "{}"))
      assert_frame(c, reply(unquote(vsn), nil, "4", "phoenix", "ok", "{}"))
    end
  end

  test "a missing vsn means 1.0.0" do
    c = connect!()
    push(c, ~s({"topic":"test:x","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}))
    assert_frame(c, {:text, ~s({"event":"phx_reply","payload":{"response":{"topic":"test:x"},"status":"ok"},"ref":"1","topic":"test:x"})})
  end

  test "a disconnect broadcast to the socket id closes every connection with that id (1001)" do
    [a, b] = for _ <- 1..2, do: connect!(%{"vsn" => "2.0.0", "user_id" => "dc"})
    other = connect!(%{"vsn" => "2.0.0", "user_id" => "other"})
    push(a, client(:v2, "1", "1", "test:dc", "phx_join", "{}"))
    a = assert_frame(a, reply(:v2, "1", "1", "test:dc", "ok", ~s({"topic":"test:dc"})))

    :ok = Fenix.TestEndpoint.broadcast("user:dc", "disconnect", %{})
    assert_frame(a, {:close, 1001, ""})
    assert_frame(b, {:close, 1001, ""})
    assert_receive {:terminate, "test:dc", {:shutdown, :closed}}

    push(other, client(:v2, nil, "2", "phoenix", "heartbeat", "{}"))
    assert_frame(other, reply(:v2, nil, "2", "phoenix", "ok", "{}"))
  end

  test "the idle timeout closes a silent connection with 1002" do
    c = connect!(%{}, path: "/short")
    assert_frame(c, {:close, 1002, ""}, 2_000)
  end

  describe "channel routes" do
    test "a splat pattern must end with *" do
      assert_raise ArgumentError, ~r/must end with \*/, fn ->
        Code.compile_string("""
        defmodule BadSocket do
          use Fenix.Socket
          channel "room:*:x", SomeChannel
        end
        """)
      end
    end
  end

  describe "check_origin" do
    defp connect_from(path, origin, host \\ nil) do
      query = URI.encode_query(%{"test_pid" => to_string(:erlang.pid_to_list(self()))})
      headers = if(origin, do: [{"origin", origin}], else: []) ++ if(host, do: [{"host", host}], else: [])

      case WSClient.connect(port(), "#{path}/websocket?#{query}", headers) do
        {:ok, c, _headers} ->
          WSClient.close(c)
          :ok

        {:error, {:http, status, _headers}} ->
          status
      end
    end

    @tag capture_log: true
    test "true (the default): the endpoint's url host, \"localhost\" unless configured" do
      assert connect_from("/socket", nil) == :ok, "no Origin: not a browser, allowed"
      assert connect_from("/socket", "http://localhost:3000") == :ok
      assert connect_from("/socket", "https://localhost") == :ok
      assert connect_from("/socket", "http://127.0.0.1:4000") == 403
      assert connect_from("/socket", "http://evil.com") == 403
      assert connect_from("/socket", "null") == 403
      connects = Stream.repeatedly(fn -> receive(do: ({:connect_info, _} -> true), after: (0 -> nil)) end)
      assert connects |> Enum.take_while(& &1) |> length() == 3, "connect/3 ran for the allowed ones only"
    end

    @tag capture_log: true
    test "a list: each named part must match; *. is the host and its subdomains" do
      for origin <- ["http://example.com", "https://a.b.example.com:99", "https://exact.org", "ws://any.net:8080"] do
        assert connect_from("/origins", origin) == :ok, origin
      end

      for origin <- ["http://exact.org", "https://notexample.com", "https://exact.org:444", "http://any.net", "http://any.net:8081"] do
        assert connect_from("/origins", origin) == 403, origin
      end
    end

    @tag capture_log: true
    test ":conn, false and an MFA" do
      assert connect_from("/same-host", "http://chat.io:4000", "chat.io:4000") == :ok
      assert connect_from("/same-host", "http://chat.io:4001", "chat.io:4000") == 403
      assert connect_from("/same-host", "https://chat.io:4000", "chat.io:4000") == 403
      assert connect_from("/any-origin", "http://evil.com") == :ok
      assert connect_from("/mfa-origin", "https://ok.io") == :ok
      assert connect_from("/mfa-origin", "https://ko.io") == 403
    end

    test "a refused origin is logged, saying how to allow it" do
      log = ExUnit.CaptureLog.capture_log(fn -> assert connect_from("/socket", "http://evil.com") == 403 end)
      assert log =~ ~s(origin "http://evil.com")
      assert log =~ "check_origin"
    end

    test "check_origin values are checked when the socket is mounted" do
      assert_raise ArgumentError, ~r/expected one with a host/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, websocket: [check_origin: ["example.com"]])
      end

      assert_raise ArgumentError, ~r/expects a boolean/, fn ->
        Fenix.Endpoint.__socket__("/s", Fenix.TestSocket, websocket: [check_origin: "//example.com"])
      end
    end
  end
end
