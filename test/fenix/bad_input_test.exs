defmodule Fenix.BadInputTest do
  # What each kind of bad input gets: a close of that one connection, with a code
  # that says why, while every other connection keeps working.
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.Test.WSClient

  setup do
    bystander = connect!(%{"vsn" => "2.0.0"})
    push(bystander, client(:v2, "1", "1", "test:by", "phx_join", "{}"))
    bystander = assert_frame(bystander, reply(:v2, "1", "1", "test:by", "ok", ~s({"topic":"test:by"})))

    on_exit(fn -> :ok end)
    %{bystander: bystander}
  end

  defp assert_alive(bystander) do
    push(bystander, client(:v2, "1", "9", "test:by", "ping", ~s({"alive":true})))
    assert_frame(bystander, reply(:v2, "1", "9", "test:by", "ok", ~s({"alive":true})))
  end

  defp assert_closed_with(c, code) do
    assert {{:close, ^code, reason}, _} = WSClient.recv(c)
    reason
  end

  for {name, vsn, frame, code} <- [
        {"malformed JSON", "2.0.0", "[\"1\",", 1007},
        {"a wrong shape (v2)", "2.0.0", ~s({"topic":"x"}), 1007},
        {"a wrong shape (v1)", "1.0.0", ~s(["1","1","t","e",{}]), 1007},
        {"a non-string topic", "2.0.0", ~s(["1","1",5,"e",{}]), 1007},
        {"text that is not UTF-8", "2.0.0", <<"[\"1\",\"1\",\"t\",\"", 0xFF, "\",{}]">>, 1007}
      ] do
    test "#{name} closes the connection with #{code}", %{bystander: bystander} do
      c = connect!(%{"vsn" => unquote(vsn)})
      push(c, unquote(frame))
      assert assert_closed_with(c, unquote(code)) =~ "malformed"
      assert_alive(bystander)
    end
  end

  test "the close is logged through Logger" do
    log =
      ExUnit.CaptureLog.capture_log(fn ->
        c = connect!(%{"vsn" => "2.0.0"})
        push(c, "not json")
        assert_closed_with(c, 1007)
        Process.sleep(100)
      end)

    assert log =~ "fenix: closing connection"
    assert log =~ "malformed channel message"
  end

  test "a binary frame on vsn 1.0.0 closes with 1007", %{bystander: bystander} do
    c = connect!(%{"vsn" => "1.0.0"})
    WSClient.send_binary(c, <<0, 1, 1, 1, 1, "1", "1", "t", "e">>)
    assert assert_closed_with(c, 1007) =~ "vsn 2.0.0"
    assert_alive(bystander)
  end

  test "a malformed binary frame closes with 1007", %{bystander: bystander} do
    c = connect!(%{"vsn" => "2.0.0"})
    WSClient.send_binary(c, <<0, 9, 9, 9, 9, "x">>)
    assert assert_closed_with(c, 1007) =~ "malformed binary"
    assert_alive(bystander)
  end

  test "a message over max_frame_size closes with 1009", %{bystander: bystander} do
    c = connect!(%{"vsn" => "2.0.0"})
    push(c, client(:v2, nil, "1", "test:x", "ping", ~s({"big":"#{String.duplicate("x", 5000)}"})))
    assert assert_closed_with(c, 1009) =~ "exceeds the limit of 4096"
    assert_alive(bystander)
  end

  test "fragments adding up past max_frame_size close with 1009", %{bystander: bystander} do
    c = connect!(%{"vsn" => "2.0.0"})
    WSClient.send_frame(c, 0x1, String.duplicate("x", 3000), false)
    WSClient.send_frame(c, 0x0, String.duplicate("x", 3000), true)
    assert_closed_with(c, 1009)
    assert_alive(bystander)
  end

  test "a fragmented message is reassembled", %{bystander: bystander} do
    WSClient.send_frame(bystander, 0x1, ~s(["1","5","test:by",), false)
    WSClient.send_frame(bystander, 0x0, ~s("ping",{"frag":1}]), true)
    assert_frame(bystander, reply(:v2, "1", "5", "test:by", "ok", ~s({"frag":1})))
  end

  test "an unmasked frame closes with 1002", %{bystander: bystander} do
    c = connect!(%{"vsn" => "2.0.0"})
    :gen_tcp.send(c.socket, <<0x81, 2, "{}">>)
    assert assert_closed_with(c, 1002) =~ "RFC6455"
    assert_alive(bystander)
  end

  test "a ping gets a pong", %{bystander: bystander} do
    WSClient.send_frame(bystander, 0x9, "hi")
    assert_frame(bystander, {:pong, "hi"})
  end

  test "an abrupt disconnect ends the connection's channels", %{bystander: bystander} do
    c = connect!(%{"vsn" => "2.0.0"})
    push(c, client(:v2, "1", "1", "test:abrupt", "phx_join", "{}"))
    assert_frame(c, reply(:v2, "1", "1", "test:abrupt", "ok", ~s({"topic":"test:abrupt"})))
    :gen_tcp.shutdown(c.socket, :read_write)
    assert_receive {:terminate, "test:abrupt", {:shutdown, :closed}}
    assert_alive(bystander)
  end

  test "garbage instead of an HTTP request is answered 400" do
    {:ok, s} = :gen_tcp.connect(~c"127.0.0.1", port(), [:binary, active: false])
    :gen_tcp.send(s, "\x00\x01garbage\r\n\r\n")
    assert {:ok, "HTTP/1.1 400 Bad Request" <> _} = :gen_tcp.recv(s, 0, 2_000)
  end
end
