defmodule Fenix.Socket.Message do
  @moduledoc """
  A message to the client, as `Phoenix.Socket.Message`: what `Fenix.ChannelTest`'s
  test process receives for each push of the channel under test (`assert_push/3`).
  """

  @type t :: %__MODULE__{topic: String.t(), event: String.t(), payload: term(), ref: term(), join_ref: term()}
  defstruct [:topic, :event, :payload, :ref, :join_ref]
end
