defmodule Fenix.PresenceTest do
  use ExUnit.Case, async: true

  import Fenix.Test.{Client, Frames}

  alias Fenix.TestPresence, as: Presence
  alias Fenix.Test.WSClient

  # A process that tracks and then waits to be told what to do.
  defp tracker(topic, key, meta) do
    test = self()

    pid =
      spawn(fn ->
        send(test, {:tracked, Presence.track(self(), topic, key, meta)})
        receive do: (:exit -> :ok)
      end)

    assert_receive {:tracked, {:ok, _ref}}
    pid
  end


  describe "track/4, list/1, get_by_key/2" do
    test "gives each meta a phx_ref, and lists by key" do
      topic = "presence:list"
      assert {:ok, ref} = Presence.track(self(), topic, "ann", %{name: "Ann"})
      assert byte_size(ref) == 16
      assert Presence.list(topic) == %{"ann" => %{metas: [%{name: "Ann", phx_ref: ref}]}}
      assert Presence.get_by_key(topic, "ann") == %{metas: [%{name: "Ann", phx_ref: ref}]}
      assert Presence.get_by_key(topic, "bob") == []
      assert Presence.list("presence:nobody") == %{}
    end

    test "metas come back as they were tracked, with the server's refs put in" do
      topic = "presence:terms"
      meta = %{name: "Ann", n: -70_000_000_000, at: 1.5, away: true, status: :busy, tags: ["a", 1], nested: %{"k" => [nil, %{deep: 2}]}}
      {:ok, ref} = Presence.track(self(), topic, "ann", Map.merge(meta, %{phx_ref: "forged", phx_ref_prev: "forged"}))
      assert Presence.list(topic) == %{"ann" => %{metas: [Map.put(meta, :phx_ref, ref)]}}
      {:ok, new_ref} = Presence.update(self(), topic, "ann", fn old -> assert old == meta; Map.put(old, :n, 1) end)
      assert Presence.get_by_key(topic, "ann") == %{metas: [%{meta | n: 1} |> Map.merge(%{phx_ref: new_ref, phx_ref_prev: ref})]}

      # More than 32 fields (a hash map in the VM), and a topic of many keys.
      wide = Map.new(1..40, &{:"field#{&1}", &1})
      for i <- 1..300, do: tracker(topic, "user#{i}", wide)
      presences = Presence.list(topic)
      assert map_size(presences) == 301
      assert %{metas: [%{field40: 40, phx_ref: _} = listed]} = presences["user7"]
      assert Map.delete(listed, :phx_ref) == wide
      assert presences["user7"] == Presence.get_by_key(topic, "user7")
    end

    test "a second track of the same key by the same process is refused, as in Phoenix" do
      topic = "presence:twice"
      {:ok, _} = Presence.track(self(), topic, "ann", %{})
      me = self()
      assert Presence.track(me, topic, "ann", %{}) == {:error, {:already_tracked, me, topic, "ann"}}
      # Another process may track the same key: two metas under it.
      tracker(topic, "ann", %{})
      assert %{metas: [_, _]} = Presence.get_by_key(topic, "ann")
    end

    test "limits are errors, not crashes" do
      assert {:error, {:meta_too_large, _}} = Presence.track(self(), "presence:big", "ann", %{pad: String.duplicate("x", 2000)})
      me = self()
      assert {:error, {:unsupported_meta, %{pid: ^me}}} = Presence.track(me, "presence:big", "ann", %{pid: me})
      assert Presence.list("presence:big") == %{}
    end
  end

  describe "update/4 and untrack/3" do
    test "an update gives a new phx_ref; a function gets the old meta" do
      topic = "presence:update"
      {:ok, ref} = Presence.track(self(), topic, "ann", %{"status" => "here"})
      assert {:ok, new_ref} = Presence.update(self(), topic, "ann", fn meta -> Map.put(meta, "status", "away") end)
      assert new_ref != ref
      assert Presence.get_by_key(topic, "ann") == %{metas: [%{"status" => "away", phx_ref: new_ref, phx_ref_prev: ref}]}
      assert Presence.update(self(), topic, "bob", %{}) == {:error, :nopresence}
      assert Presence.update(self(), topic, "bob", & &1) == {:error, :nopresence}
    end

    test "untrack removes the key" do
      topic = "presence:untrack"
      {:ok, _} = Presence.track(self(), topic, "ann", %{})
      assert Presence.untrack(self(), topic, "ann") == :ok
      assert Presence.list(topic) == %{}
      assert Presence.untrack(self(), topic, "ann") == :ok
    end
  end

  describe "a tracked process that exits leaves" do
    for how <- [:normal, :kill, :crash] do
      test "on #{how}" do
        topic = "presence:exit:#{unquote(how)}"
        pid = tracker(topic, "ann", %{})
        assert %{"ann" => _} = Presence.list(topic)

        case unquote(how) do
          :normal -> send(pid, :exit)
          :kill -> Process.exit(pid, :kill)
          :crash -> Process.exit(pid, :boom)
        end

        assert eventually(fn -> Presence.list(topic) == %{} end)
      end
    end
  end

  describe "presence_diff" do
    test "members get one diff per tick, with every join of it" do
      c = join!(connect!(%{"vsn" => "2.0.0"}), "test:presence-wire")

      joins = for i <- 1..20, do: ~s("u#{i}":{"metas":[{"phx_ref":"#{elem(Presence.track(self(), "test:presence-wire", "u#{i}", %{}), 1)}"}]})
      # One frame per tick: 20 joins made at once come in one diff, or two if a tick fell between.
      texts = diffs(c, joins, [])
      assert length(texts) <= 2
      for text <- texts, do: assert(text =~ ~r/^\[null,null,"test:presence-wire","presence_diff",\{"joins":\{.*\},"leaves":\{\}\}\]$/)
      assert Enum.all?(joins, fn join -> Enum.any?(texts, &String.contains?(&1, join)) end)
    end
  end

  describe "intercept [\"presence_diff\"]" do
    test "a channel that intercepts presence_diff gets it in handle_out, as terms" do
      topic = "presence_out:room"
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)
      {:ok, ref} = Presence.track(self(), topic, "ann", %{name: "Ann"})
      assert_receive {:presence_diff_out, %{joins: %{"ann" => %{metas: [%{name: "Ann", phx_ref: ^ref}]}}, leaves: %{}}}, 2_000
      assert_frame(c, server(:v2, "1", nil, topic, "presence_diff", ~s({"joins":{"ann":{"metas":[{"name":"Ann","phx_ref":"#{ref}"}]}},"leaves":{}})))
      refute_frame(c, 100)
    end
  end

  describe "pushing a list" do
    # The test channel lists its topic and pushes it, as after_join does; "then" changes
    # the topic, or the list, between the two.
    defp pushed_state(c, topic, then) do
      push(c, client(:v2, "1", "2", topic, "presence_state", ~s({"then":"#{then}"})))
      state_and_reply(c, topic)
    end

    # The pushed state and the push's reply; the diffs the topic's ticks broadcast
    # meanwhile (the tests track on it) are skipped.
    defp state_and_reply(c, topic) do
      {{:text, state}, c} = next_not_diff(c)
      {reply, c} = next_not_diff(c)
      assert reply == reply(:v2, "1", "2", topic, "ok", "{}")
      {state, c}
    end

    defp next_not_diff(c) do
      {{:text, text}, c} = WSClient.recv(c, 2_000)
      if text =~ ~r/^\[null,null,"[^"]*","presence_diff",/, do: next_not_diff(c), else: {{:text, text}, c}
    end

    test "a channel's pushed list is its topic's state when it listed it" do
      topic = "test:state"
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)
      {state, c} = pushed_state(c, topic, "nothing")
      assert state == ~s(["1",null,"#{topic}","presence_state",{}])

      {:ok, ann} = Presence.track(self(), topic, "ann", %{name: "Ann", n: 1})
      bob = tracker(topic, "bob", %{"name" => "Bob"})
      [%{phx_ref: bob_ref}] = Presence.get_by_key(topic, "bob").metas
      # The engine's encoding: every meta's fields sorted.
      listed = ~s({"ann":{"metas":[{"n":1,"name":"Ann","phx_ref":"#{ann}"}]},"bob":{"metas":[{"name":"Bob","phx_ref":"#{bob_ref}"}]}})
      {state, c} = pushed_state(c, topic, "nothing")
      assert state == ~s(["1",null,"#{topic}","presence_state",#{listed}])

      # The topic changes between the list and the push: the list is what is sent, now
      # encoded from its terms (atom keys before strings: phx_ref before "name").
      as_terms = ~s({"ann":{"metas":[{"n":1,"name":"Ann","phx_ref":"#{ann}"}]},"bob":{"metas":[{"phx_ref":"#{bob_ref}","name":"Bob"}]}})
      {state, c} = pushed_state(c, topic, "track")
      assert state == ~s(["1",null,"#{topic}","presence_state",#{as_terms}])
      assert %{"late" => _} = Presence.list(topic)

      # The list is changed before it is pushed: the change is sent.
      {state, _c} = pushed_state(c, topic, "change")
      assert state =~ ~s("extra":{"metas":[]})
      send(bob, :exit)
    end

    test "push_state/1 pushes the topic's state without a list; through fetch/2 if there is one" do
      topic = "test:push_state"
      c = join!(connect!(%{"vsn" => "2.0.0"}), topic)
      push_state = fn c, fetch? ->
        push(c, client(:v2, "1", "2", topic, "push_state", ~s({"fetch":#{fetch?}})))
        state_and_reply(c, topic)
      end

      {state, c} = push_state.(c, false)
      assert state == ~s(["1",null,"#{topic}","presence_state",{}])
      {:ok, ann} = Presence.track(self(), topic, "ann", %{"name" => "Ann", n: 1})
      {state, c} = push_state.(c, false)
      assert state == ~s(["1",null,"#{topic}","presence_state",{"ann":{"metas":[{"n":1,"name":"Ann","phx_ref":"#{ann}"}]}}])

      {:ok, bob} = Fenix.TestFetchPresence.track(self(), topic, "bob", %{})
      {state, _c} = push_state.(c, true)
      assert state == ~s(["1",null,"#{topic}","presence_state",{"bob":{"metas":[{"phx_ref":"#{bob}"}],"user":"user bob"}}])
    end

    test "only the very list a channel made is remembered, until it is pushed" do
      socket = %Fenix.Socket{topic: "presence:listed", channel_pid: self()}
      {:ok, _} = Presence.track(self(), socket.topic, "ann", %{})
      presences = Presence.list(socket)
      assert Fenix.Presence.Listed.take(Map.put(presences, "x", 1)) == nil
      assert {_hub, "presence:listed", version} = Fenix.Presence.Listed.take(presences)
      assert is_integer(version)
      assert Fenix.Presence.Listed.take(presences) == nil, "taken once"

      _ = Presence.list(socket)
      Fenix.Presence.Listed.forget()
      assert Fenix.Presence.Listed.take(presences) == nil
      # A list by topic, or of another process's socket, is not remembered.
      _ = Presence.list(socket.topic)
      _ = Presence.list(%{socket | channel_pid: spawn(fn -> :ok end)})
      assert Fenix.Presence.Listed.take(presences) == nil
    end
  end

  describe "fetch/2, init/1 and handle_metas/4" do
    test "list and get_by_key go through fetch/2, and so does each diff, once" do
      Process.register(self(), :fenix_presence_listener)
      c = join!(connect!(%{"vsn" => "2.0.0"}), "test:fetch")

      {:ok, ref} = Fenix.TestFetchPresence.track(self(), "test:fetch", "ann", %{})
      metas = [%{phx_ref: ref}]
      assert Fenix.TestFetchPresence.list("test:fetch") == %{"ann" => %{metas: metas, user: "user ann"}}
      assert Fenix.TestFetchPresence.get_by_key("test:fetch", "ann") == %{metas: metas, user: "user ann"}
      assert Fenix.TestFetchPresence.get_by_key("test:fetch", "bob") == []

      # The diff the client gets is fetch/2's.
      assert_frame(c, server(:v2, nil, nil, "test:fetch", "presence_diff", ~s({"joins":{"ann":{"metas":[{"phx_ref":"#{ref}"}],"user":"user ann"}},"leaves":{}})))
      assert_receive {:handle_metas, "test:fetch", %{joins: %{"ann" => %{metas: ^metas, user: "user ann"}}, leaves: %{}}, presences, state}
      assert presences == %{"ann" => %{metas: metas, user: "user ann"}}
      assert state.opts == [greeting: "hi"], "init/1 got the start options that are not the presence's own"
      refute_frame(c, 100)
    end
  end

  defp diffs(c, joins, texts) do
    {{:text, text}, c} = WSClient.recv(c, 2_000)
    texts = [text | texts]
    seen = Enum.count(joins, fn join -> Enum.any?(texts, &String.contains?(&1, join)) end)
    if seen < length(joins) and length(texts) < 3, do: diffs(c, joins, texts), else: Enum.reverse(texts)
  end
end
