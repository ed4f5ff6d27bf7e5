defmodule Fenix.Conformance.RoomChannel do
  @moduledoc false
  use Fenix.Channel

  alias Fenix.Conformance.{Endpoint, Presence}

  intercept ["intercepted"]

  @impl true
  def join("room:private", _payload, _socket), do: {:error, %{reason: "unauthorized"}}
  def join("room:crash", _payload, _socket), do: raise("join crashed on purpose")

  def join(topic, payload, socket) do
    # Tracked after the join reply, as Phoenix apps do: presence_state first (without
    # this client), then the presence_diff of its own join.
    if payload["track"] == true, do: send(self(), {:after_join, payload["name"]})
    {:ok, %{joined: topic, user_id: socket.assigns.user_id}, socket}
  end

  @impl true
  def handle_in("echo", payload, socket), do: {:reply, {:ok, payload}, socket}
  def handle_in("error", payload, socket), do: {:reply, {:error, payload}, socket}

  # Binary payloads (vsn 2.0.0): the same bytes back as a binary reply, or to the topic.
  def handle_in("bin", {:binary, data}, socket), do: {:reply, {:ok, {:binary, data}}, socket}

  def handle_in("shout_bin", {:binary, data}, socket) do
    broadcast!(socket, "bin", {:binary, data})
    {:noreply, socket}
  end

  def handle_in("shout", payload, socket) do
    broadcast!(socket, "shout", payload)
    {:noreply, socket}
  end

  def handle_in("shout_from", payload, socket) do
    broadcast_from!(socket, "shout", payload)
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("push", payload, socket) do
    push(socket, "pushed", payload)
    {:noreply, socket}
  end

  def handle_in("async", payload, socket) do
    ref = socket_ref(socket)

    Task.start(fn ->
      Process.sleep(50)
      reply(ref, {:ok, payload})
    end)

    {:noreply, socket}
  end

  def handle_in("crash", _payload, _socket), do: raise("channel crashed on purpose")
  def handle_in("stop", _payload, socket), do: {:stop, :normal, socket}

  def handle_in("intercepted", payload, socket) do
    broadcast!(socket, "intercepted", payload)
    {:noreply, socket}
  end

  def handle_in("disconnect_me", _payload, socket) do
    if socket.id, do: Endpoint.broadcast!(socket.id, "disconnect", %{})
    {:noreply, socket}
  end

  def handle_in("blast", %{"n" => n, "body" => body}, socket) when is_integer(n) and n >= 0 do
    for i <- 1..n//1, do: broadcast!(socket, "blasted", %{"i" => i, "body" => body})
    {:reply, {:ok, %{n: n}}, socket}
  end

  # An Elixir process subscribed to `topic` (the endpoint's PubSub): it records every
  # broadcast it gets, for "pubsub_seen" to reply with.
  def handle_in("pubsub_watch", %{"topic" => topic}, socket) do
    channel = self()

    watcher =
      spawn_link(fn ->
        :ok = Endpoint.subscribe(topic)
        send(channel, :watching)
        watch([])
      end)

    receive do: (:watching -> :ok)
    {:reply, :ok, assign(socket, :watcher, watcher)}
  end

  def handle_in("pubsub_seen", _payload, socket) do
    send(socket.assigns.watcher, {:seen, self()})
    seen = receive do: ({:seen, seen} -> seen)
    {:reply, {:ok, %{seen: seen}}, socket}
  end

  def handle_in("presence_update", payload, socket) when is_map(payload) do
    meta = Map.put(payload, "name", socket.assigns[:presence_name])
    {:ok, _ref} = Presence.update(socket, presence_key(socket), meta)
    {:noreply, socket}
  end

  @impl true
  def handle_info({:after_join, name}, socket) do
    # Both ways a channel pushes the state; `mix fenix.conformance` picks one for a
    # benchmark to compare (push_state/1 unless told otherwise).
    case Application.get_env(:fenix, __MODULE__, [])[:presence_state_by] do
      :list -> push(socket, "presence_state", Presence.list(socket))
      _ -> :ok = Presence.push_state(socket)
    end

    {:ok, _ref} = Presence.track(socket, presence_key(socket), %{name: name})
    {:noreply, assign(socket, :presence_name, name)}
  end

  defp presence_key(socket), do: to_string(socket.assigns.user_id)

  defp watch(seen) do
    receive do
      %Fenix.Socket.Broadcast{event: event, payload: payload} -> watch([%{event: event, payload: payload} | seen])
      {:seen, pid} -> send(pid, {:seen, Enum.reverse(seen)}) && watch(seen)
    end
  end

  @impl true
  def handle_out("intercepted", payload, socket) do
    push(socket, "intercepted", Map.put(payload, "seen_by", socket.assigns.user_id))
    {:noreply, socket}
  end
end
