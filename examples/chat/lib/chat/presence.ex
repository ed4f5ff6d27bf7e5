defmodule Chat.Presence do
  @moduledoc "Who is in each room, keyed by the name they chose (several tabs: several metas)."
  use Fenix.Presence, otp_app: :chat, endpoint: Chat.Endpoint
end
