defmodule Fenix.Endpoint.Supervisor do
  @moduledoc false
  # The tree of one endpoint:
  #
  #   Endpoint (this supervisor, rest_for_one)
  #   ├── Channels: DynamicSupervisor of channel processes
  #   └── Dispatcher: owns the engine server; turns connect/join requests into work
  #
  # rest_for_one: if the dispatcher dies its engine server is stopped and restarted,
  # without touching the channels; if the channel supervisor dies, everything restarts.

  use Supervisor

  @http_defaults [ip: {127, 0, 0, 1}, port: 4000]

  def start_link(endpoint, otp_app, opts) do
    config = endpoint |> config(otp_app, opts) |> validate!()
    Supervisor.start_link(__MODULE__, {endpoint, config}, name: endpoint)
  end

  defp config(endpoint, otp_app, opts) do
    otp_app |> Application.get_env(endpoint, []) |> Keyword.merge(opts)
  end

  defp validate!(config) do
    config = Keyword.validate!(config, [:http, :static, :engine_threads, :url, :secret_key_base, :server, :pubsub_server])
    http = Keyword.merge(@http_defaults, Keyword.get(config, :http, []))
    Keyword.validate!(http, [:ip, :port])

    static =
      case Keyword.get(config, :static) do
        nil -> nil
        static -> static |> Keyword.validate!([:from]) |> Keyword.fetch!(:from) |> Path.expand()
      end

    %{http: http, static: static, engine_threads: Keyword.get(config, :engine_threads, 0)}
  end

  @impl true
  def init({endpoint, config}) do
    children = [
      {DynamicSupervisor, name: Module.concat(endpoint, Channels), strategy: :one_for_one},
      {Fenix.Endpoint.Dispatcher, {endpoint, config}}
    ]

    Supervisor.init(children, strategy: :rest_for_one)
  end
end
