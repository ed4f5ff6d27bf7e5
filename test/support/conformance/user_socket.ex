defmodule Fenix.Conformance.UserSocket do
  @moduledoc false
  use Fenix.Socket

  channel "room:*", Fenix.Conformance.RoomChannel

  @impl true
  def connect(%{"token" => "deny"}, _socket, _connect_info), do: :error
  def connect(_params, _socket, %{auth_token: "deny"}), do: :error

  def connect(params, socket, _connect_info) do
    {:ok, assign(socket, :user_id, params["user_id"])}
  end

  @impl true
  def id(%{assigns: %{user_id: nil}}), do: nil
  def id(%{assigns: %{user_id: user_id}}), do: "users_socket:" <> user_id
end
