defmodule Chat.Endpoint do
  @moduledoc "The demo's endpoint: the chat page and one socket."
  use Fenix.Endpoint, otp_app: :chat

  socket "/socket", Chat.UserSocket
end

defmodule Chat.UserSocket do
  @moduledoc "Anyone may connect; `user_id` names them."
  use Fenix.Socket

  channel "room:*", Chat.RoomChannel

  @impl true
  def connect(params, socket, _connect_info) do
    {:ok, assign(socket, :user_id, Map.get(params, "user_id", "anonymous"))}
  end

  @impl true
  def id(socket), do: "users_socket:" <> socket.assigns.user_id
end

defmodule Chat.RoomChannel do
  @moduledoc "Every `shout` is broadcast to the whole room."
  use Fenix.Channel

  @impl true
  def join("room:" <> _name, _payload, socket), do: {:ok, socket}

  @impl true
  def handle_in("shout", %{"body" => body}, socket) when is_binary(body) and body != "" do
    broadcast!(socket, "shout", %{user: socket.assigns.user_id, body: String.slice(body, 0, 2000)})
    {:noreply, socket}
  end

  def handle_in("shout", _payload, socket), do: {:reply, {:error, %{reason: "empty message"}}, socket}
end
