defmodule Chat.Endpoint do
  @moduledoc "The demo's endpoint: the chat page and one socket."
  use Fenix.Endpoint, otp_app: :chat

  socket "/socket", Chat.UserSocket
end
