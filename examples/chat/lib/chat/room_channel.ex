defmodule Chat.RoomChannel do
  @moduledoc """
  A chat room: every `shout` is broadcast to the whole room, and `Chat.Presence` tracks
  who is in it. After the join reply the joiner gets `presence_state` (everyone already
  there), then it is tracked, so it and the others see it arrive in a `presence_diff`;
  it leaves the list when its channel ends (the tab closes or the connection drops).
  """
  use Fenix.Channel

  alias Chat.Presence

  @impl true
  def join("room:" <> _name, _payload, socket) do
    # The channel is joined only once join/3 returns, so presence_state and the track
    # happen from its mailbox, right after the join reply (as in a Phoenix app).
    send(self(), :after_join)
    {:ok, socket}
  end

  @impl true
  def handle_in("shout", %{"body" => body}, socket) when is_binary(body) and body != "" do
    broadcast!(socket, "shout", %{user: socket.assigns.user_id, body: String.slice(body, 0, 2000)})
    {:noreply, socket}
  end

  def handle_in("shout", _payload, socket), do: {:reply, {:error, %{reason: "empty message"}}, socket}

  @impl true
  def handle_info(:after_join, socket) do
    push(socket, "presence_state", Presence.list(socket))
    {:ok, _ref} = Presence.track(socket, socket.assigns.user_id, %{online_at: System.system_time(:second)})
    {:noreply, socket}
  end
end
