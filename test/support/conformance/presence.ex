defmodule Fenix.Conformance.Presence do
  @moduledoc false
  # The conformance app's presence: who is on each `room:*` topic (CONFORMANCE.md,
  # `"track": true` in the join payload and the `presence_update` event).
  use Fenix.Presence, otp_app: :fenix, endpoint: Fenix.Conformance.Endpoint
end
