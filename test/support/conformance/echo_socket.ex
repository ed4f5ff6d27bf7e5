defmodule Fenix.Conformance.EchoSocket do
  @moduledoc false
  # The raw echo transport of CONFORMANCE.md (`/echo/websocket`): every text or binary
  # message goes back unchanged, with its opcode. Pings, fragments, UTF-8 checks, the
  # size limit and the close handshake are the engine's.
  @behaviour Fenix.Socket.Transport

  @impl true
  def child_spec(_opts), do: :ignore

  @impl true
  def connect(_transport_info), do: {:ok, nil}

  @impl true
  def init(state), do: {:ok, state}

  @impl true
  def handle_in({message, opcode: opcode}, state), do: {:reply, :ok, {opcode, message}, state}

  @impl true
  def handle_info(_message, state), do: {:ok, state}

  @impl true
  def terminate(_reason, _state), do: :ok
end
