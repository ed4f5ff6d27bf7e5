defmodule Fenix.PubSubTest do
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.PubSub
  alias Fenix.Socket.Broadcast
  alias Fenix.TestEndpoint, as: Endpoint

  @pubsub Fenix.TestPubSub

  # A dispatcher that tells the process named in the message what it was given.
  defmodule Tattler do
    def dispatch(entries, from, {:tell, pid}), do: send(pid, {:dispatched, entries, from})
  end

  defp unique(prefix), do: "#{prefix}:#{System.unique_integer([:positive])}"

  # A process that subscribes to `topics` and relays everything it receives.
  defp subscriber(topics, opts \\ []) do
    test = self()

    pid =
      spawn(fn ->
        for topic <- List.wrap(topics), do: :ok = PubSub.subscribe(@pubsub, topic, opts)
        send(test, {:subscribed, self()})
        relay(test)
      end)

    assert_receive {:subscribed, ^pid}
    pid
  end

  defp relay(test) do
    receive do
      :exit -> :ok
      message -> send(test, {:relayed, self(), message}) && relay(test)
    end
  end

  defp entries(pubsub \\ @pubsub, topic) do
    :ok = PubSub.broadcast(pubsub, topic, {:tell, self()}, Tattler)
    assert_receive {:dispatched, entries, :none}
    entries
  end

  describe "Fenix.PubSub" do
    test "subscribers get every message as it was sent, in order" do
      topic = unique("pubsub")
      :ok = PubSub.subscribe(@pubsub, topic)
      other = subscriber(topic)

      for n <- 1..50, do: :ok = PubSub.broadcast(@pubsub, topic, {:n, n, %{"any" => [:term]}})

      for n <- 1..50 do
        assert_receive {:n, ^n, %{"any" => [:term]}}
        assert_receive {:relayed, ^other, {:n, ^n, _}}
      end

      :ok = PubSub.broadcast(@pubsub, unique("pubsub"), :elsewhere)
      refute_receive :elsewhere, 50
    end

    test "a process subscribed twice gets each message twice; unsubscribe/2 ends both" do
      topic = unique("pubsub")
      :ok = PubSub.subscribe(@pubsub, topic)
      :ok = PubSub.subscribe(@pubsub, topic)
      :ok = PubSub.broadcast(@pubsub, topic, :twice)
      assert_receive :twice
      assert_receive :twice

      :ok = PubSub.unsubscribe(@pubsub, topic)
      :ok = PubSub.broadcast(@pubsub, topic, :gone)
      refute_receive :gone, 50
    end

    test "the _from variants skip the process given; local and direct broadcasts reach this node" do
      topic = unique("pubsub")
      :ok = PubSub.subscribe(@pubsub, topic)
      other = subscriber(topic)

      :ok = PubSub.broadcast_from(@pubsub, self(), topic, :from)
      :ok = PubSub.local_broadcast_from(@pubsub, self(), topic, :local_from)
      assert_receive {:relayed, ^other, :from}
      assert_receive {:relayed, ^other, :local_from}
      refute_receive :from, 50
      refute_receive :local_from, 0

      :ok = PubSub.local_broadcast(@pubsub, topic, :local)
      :ok = PubSub.direct_broadcast(PubSub.node_name(@pubsub), @pubsub, topic, :direct)
      assert_receive :local
      assert_receive :direct
      assert PubSub.node_name(@pubsub) == node()
      assert PubSub.direct_broadcast(:nowhere@nohost, @pubsub, topic, :lost) == {:error, {:unknown_node, :nowhere@nohost}}
      assert_raise PubSub.BroadcastError, fn -> PubSub.direct_broadcast!(:nowhere@nohost, @pubsub, topic, :lost) end
    end

    test "custom dispatchers get the subscriptions' pids and metadata, and the excluded pid" do
      topic = unique("pubsub")
      a = subscriber(topic, metadata: {:fastlane, :anything})
      b = subscriber(topic)
      assert entries(topic) == [{a, {:fastlane, :anything}}, {b, nil}]

      :ok = PubSub.broadcast_from(@pubsub, a, topic, {:tell, self()}, Tattler)
      assert_receive {:dispatched, [_, _], ^a}
      assert_raise ArgumentError, fn -> PubSub.subscribe(@pubsub, topic, meta: 1) end
    end

    test "a subscriber that exits, for any reason, is unsubscribed from every topic" do
      [t1, t2] = [unique("pubsub"), unique("pubsub")]

      for reason <- [:exit, :kill] do
        pid = subscriber([t1, t2, t1])
        assert [{^pid, nil}, {^pid, nil}] = entries(t1)
        ref = Process.monitor(pid)
        if reason == :kill, do: Process.exit(pid, :kill), else: send(pid, :exit)
        assert_receive {:DOWN, ^ref, _, _, _}
        assert eventually(fn -> entries(t1) == [] and entries(t2) == [] end)
      end
    end

    test "an unknown server is an ArgumentError" do
      assert_raise ArgumentError, ~r/unknown Fenix.PubSub server: :nope/, fn -> PubSub.subscribe(:nope, "t") end
      assert_raise ArgumentError, fn -> PubSub.broadcast(:nope, "t", :m) end
    end

    test "the subscriptions outlive a restart of the server's process" do
      name = :"restarted_pubsub_#{System.unique_integer([:positive])}"
      start_supervised!({PubSub, name: name})
      :ok = PubSub.subscribe(name, "t")
      old = Process.whereis(name)
      Process.exit(old, :kill)
      assert eventually(fn -> Process.whereis(name) not in [nil, old] end)
      :ok = PubSub.broadcast(name, "t", :still_here)
      assert_receive :still_here
    end

    test "many subscribers and large messages are sent from a dirty scheduler, all of them" do
      topic = unique("pubsub")
      pids = for _ <- 1..600, do: subscriber(topic)
      large = Enum.to_list(1..10_000)
      :ok = PubSub.broadcast(@pubsub, topic, {:large, large})
      :ok = Endpoint.broadcast(topic, "many", %{})

      for pid <- pids do
        assert_receive {:relayed, ^pid, {:large, ^large}}
        assert_receive {:relayed, ^pid, %Broadcast{topic: ^topic, event: "many"}}
      end
    end
  end

  describe "endpoint subscriptions" do
    test "a broadcast reaches the topic's clients as frames and its subscribers as %Broadcast{}, in the same order" do
      topic = unique("test:order")
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)
      :ok = Endpoint.subscribe(topic)

      for n <- 1..30, do: :ok = Endpoint.broadcast(topic, "n", %{n: n})

      Enum.reduce(1..30, c, fn n, c ->
        assert_receive %Broadcast{topic: ^topic, event: "n", payload: %{n: ^n}}
        assert_frame(c, server(:v2, nil, nil, topic, "n", ~s({"n":#{n}})))
      end)

      :ok = Endpoint.unsubscribe(topic)
      :ok = Endpoint.broadcast(topic, "n", %{})
      refute_receive %Broadcast{}, 50
    end

    test "broadcast_from skips the subscriber given; a channel's broadcast_from skips its own process" do
      topic = unique("test:from")
      :ok = Endpoint.subscribe(topic)
      other = subscriber(topic)
      :ok = Endpoint.broadcast_from(self(), topic, "e", %{})
      :ok = Endpoint.local_broadcast_from(self(), topic, "e", %{})
      assert_receive {:relayed, ^other, %Broadcast{event: "e"}}
      assert_receive {:relayed, ^other, %Broadcast{event: "e"}}
      refute_receive %Broadcast{}, 50
    end

    test "Fenix.PubSub.broadcast/3 to a channel's topic reaches its process: handle_info/2, or handle_out/3 for a %Broadcast{}" do
      topic = unique("test:to_channel")
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)

      :ok = PubSub.broadcast(@pubsub, topic, {:push, "via_info", %{"a" => 1}})
      c = assert_frame(c, server(:v2, "1", nil, topic, "via_info", ~s({"a":1})))

      :ok = PubSub.broadcast(@pubsub, topic, %Broadcast{topic: topic, event: "out", payload: %{"b" => 2}})
      assert_receive {:handle_out, %{"b" => 2}}
      c = assert_frame(c, server(:v2, "1", nil, topic, "out", ~s({"b":2,"by":null})))
      refute_frame(c)
    end

    test "a channel that subscribes to another topic gets its broadcasts in handle_info/2" do
      topic = unique("test:subscriber")
      other = unique("other")
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)
      c = push(c, client(:v2, "1", "2", topic, "subscribe", ~s({"topic":"#{other}"})))
      c = assert_frame(c, reply(:v2, "1", "2", topic, "ok", "{}"))

      :ok = Endpoint.broadcast(other, "news", %{"x" => 1})
      assert_frame(c, server(:v2, "1", nil, topic, "relayed", ~s({"event":"news","payload":{"x":1},"topic":"#{other}"})))
    end

    test "presence diffs reach the topic's subscribers as %Broadcast{event: \"presence_diff\"}" do
      for {presence, extra} <- [{Fenix.TestPresence, %{}}, {Fenix.TestFetchPresence, %{user: "user ann"}}] do
        topic = unique("presence:subscribed")
        :ok = Endpoint.subscribe(topic)
        {:ok, ref} = presence.track(self(), topic, "ann", %{name: "Ann"})
        joins = %{"ann" => Map.merge(%{metas: [%{name: "Ann", phx_ref: ref}]}, extra)}
        assert_receive %Broadcast{topic: ^topic, event: "presence_diff", payload: %{joins: ^joins, leaves: %{}}}, 2_000
      end
    end

    test "an endpoint without a :pubsub_server says so" do
      assert_raise ArgumentError, ~r/no :pubsub_server/, fn -> Fenix.Test.SupervisedEndpoint.subscribe("t") end
    end
  end
end
