defmodule Fenix.Socket.Broadcast do
  @moduledoc """
  What a process subscribed to a topic (`c:Fenix.Endpoint.subscribe/2`) receives for each
  endpoint broadcast to it, as `Phoenix.Socket.Broadcast`:

      def handle_info(%Fenix.Socket.Broadcast{topic: "room:" <> _, event: "new_msg", payload: payload}, state)

  Presence diffs come the same way, with `event: "presence_diff"` and a
  `%{joins: presences, leaves: presences}` payload.
  """

  @type t :: %__MODULE__{topic: String.t(), event: String.t(), payload: term()}
  defstruct [:topic, :event, :payload]
end
