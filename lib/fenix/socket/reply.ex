defmodule Fenix.Socket.Reply do
  @moduledoc """
  A reply to a client push, as `Phoenix.Socket.Reply`: what `Fenix.ChannelTest`'s test
  process receives for each reply of the channel under test (`assert_reply/4`).
  """

  @type t :: %__MODULE__{topic: String.t(), status: atom(), payload: term(), ref: term(), join_ref: term()}
  defstruct [:topic, :status, :payload, :ref, :join_ref]
end
