defmodule Fenix.Channel.ServerTest do
  # The channel process's side of the engine's protocol: credit given back for every
  # client message, and the engine's wake-ups kept away from the channel's callbacks.
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  describe "inbound credit" do
    test "a client that pushes without pause is not read ahead of its channel" do
      c = connect!(%{"vsn" => "2.0.0"})
      push(c, client(:v2, "1", "1", "test:credit", "phx_join", "{}"))
      c = assert_frame(c, reply(:v2, "1", "1", "test:credit", "ok", ~s({"topic":"test:credit"})))
      assert_receive {:joined, "test:credit", _, pid}
      n = 400
      frames = for i <- 1..n, do: client(:v2, "1", "#{i}", "test:credit", "slow", ~s({"i":#{i}}))
      Enum.each(frames, &push(c, &1))
      # The channel takes ~1 ms a message; without credit its mailbox would hold them all.
      queued = for _ <- 1..20, do: (Process.sleep(10); elem(Process.info(pid, :message_queue_len), 1))
      assert Enum.max(queued) <= 16, "the channel held #{Enum.max(queued)} messages"
      Enum.reduce(1..n, c, &assert_frame(&2, reply(:v2, "1", "#{&1}", "test:credit", "ok", ~s({"i":#{&1}})), 5_000))
    end
  end

  describe "backpressure" do
    test "a late :fenix_resume does not reach the channel's handle_info/2" do
      c = connect!(%{"vsn" => "2.0.0"})
      push(c, client(:v2, "1", "1", "test:resume", "phx_join", "{}"))
      c = assert_frame(c, reply(:v2, "1", "1", "test:resume", "ok", ~s({"topic":"test:resume"})))
      assert_receive {:joined, "test:resume", _, pid}
      send(pid, :fenix_resume)
      push(c, client(:v2, "1", "2", "test:resume", "ping", ~s({"alive":true})))
      assert_frame(c, reply(:v2, "1", "2", "test:resume", "ok", ~s({"alive":true})))
      assert Process.alive?(pid)
    end
  end

  describe "large payloads" do
    test "a push or a broadcast of more than 4,096 terms is encoded on a dirty scheduler and arrives whole" do
      c = join!(connect!(%{"vsn" => "2.0.0"}), "test:big")
      assert_receive {:joined, "test:big", _, pid}
      big = Map.new(1..3_000, &{"k#{&1}", &1})
      # A map this large is a hash map: the engine writes it in the order the map iterates.
      json = "{" <> Enum.map_join(big, ",", fn {k, v} -> ~s("#{k}":#{v}) end) <> "}"
      send(pid, {:push, "big", big})
      c = assert_frame(c, server(:v2, "1", nil, "test:big", "big", json))
      :ok = Fenix.TestEndpoint.broadcast("test:big", "big", big)
      assert_frame(c, server(:v2, nil, nil, "test:big", "big", json))
    end
  end
end
