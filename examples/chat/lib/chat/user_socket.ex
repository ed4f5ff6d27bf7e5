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
