defmodule Fenix.Conformance.Endpoint do
  @moduledoc false
  # The conformance app of shared/CONFORMANCE.md: what real clients are run against.
  use Fenix.Endpoint, otp_app: :fenix

  # CONFORMANCE.md: any origin is accepted (the check itself is tested in ExUnit).
  socket "/socket", Fenix.Conformance.UserSocket,
    websocket: [timeout: 60_000, connect_info: [:auth_token], check_origin: false],
    longpoll: true,
    drainer: {__MODULE__, :drainer, []}

  # CONFORMANCE.md's raw echo transport, at /echo/websocket (the default max_frame_size, 1 MiB).
  socket "/echo", Fenix.Conformance.EchoSocket, websocket: [check_origin: false]

  @doc false
  # FENIX_DRAIN="<batch_size>:<batch_interval ms>" for the drain test; Fenix's defaults otherwise.
  def drainer do
    case System.get_env("FENIX_DRAIN") do
      nil ->
        []

      spec ->
        [size, interval] = spec |> String.split(":") |> Enum.map(&String.to_integer/1)
        [batch_size: size, batch_interval: interval]
    end
  end
end
