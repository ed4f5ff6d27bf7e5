defmodule Chat.Endpoint do
  @moduledoc "The demo's endpoint: the chat page and one socket."
  use Fenix.Endpoint, otp_app: :chat

  # The page is served by this endpoint, at whatever host the browser used.
  socket "/socket", Chat.UserSocket, websocket: [check_origin: :conn], longpoll: true
end
