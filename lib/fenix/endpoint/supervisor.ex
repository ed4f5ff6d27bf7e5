defmodule Fenix.Endpoint.Supervisor do
  @moduledoc false
  # The tree of one endpoint:
  #
  #   Endpoint (this supervisor, registered as the endpoint module, rest_for_one)
  #   ├── :registration    holds the endpoint's config (for config/2) and erases it and
  #   │                    the engine handle when the endpoint shuts down
  #   ├── :engine          a supervisor (rest_for_one) of
  #   │   ├── :channels    DynamicSupervisor of channel processes
  #   │   └── :dispatcher  owns the engine server; turns connect/join requests into work
  #   └── :drainer         at shutdown (the first to stop), closes the connections in
  #                        batches (see Fenix.Endpoint.Drainer)
  #
  # rest_for_one: if the dispatcher dies its engine server stops (closing every
  # connection with 1012) and a new dispatcher starts one on the same port; the
  # channels of those connections stop as the connections close. If the channel
  # supervisor dies, the dispatcher restarts with it. Those restarts happen inside
  # :engine, so that the drainer, which drains whenever it is shut down, only is when
  # the endpoint itself shuts down.
  #
  # The children are not registered: after a kill, the new incarnation starts while
  # the old children may still be exiting, and a registered name they still hold would
  # make the restart fail. The dispatcher gets its sibling's pid through the start
  # functions below instead (asking this supervisor could deadlock with its shutdown).

  use Supervisor

  @options [:http, :https, :static, :engine_threads, :tune_allocator, :url, :check_origin, :secret_key_base, :server, :pubsub_server]

  def start_link(endpoint, otp_app, opts) do
    config = config(endpoint, otp_app, opts)
    Supervisor.start_link(__MODULE__, {endpoint, config, validate!(config, otp_app)}, name: endpoint)
  end

  defp config(endpoint, otp_app, opts) do
    otp_app |> Application.get_env(endpoint, []) |> Keyword.merge(opts)
  end

  # The listeners' options; the limits hold for the server as a whole.
  @listener_options [:ip, :port, :head_timeout, :max_connections, :max_connections_per_address]
  @limits [:head_timeout, :max_connections, :max_connections_per_address]

  # Options left out stay nil: the engine fills in its defaults (see Fenix.Endpoint).
  defp validate!(config, otp_app) do
    config = Keyword.validate!(config, @options)
    {https, tls} = Fenix.Endpoint.HTTPS.validate!(Keyword.get(config, :https), otp_app)
    https = https && Keyword.validate!(https, @listener_options)

    # As in Phoenix: https: alone (or http: false) means no plain listener.
    http =
      case Keyword.get(config, :http, if(https, do: false, else: [])) do
        false -> nil
        http -> Keyword.validate!(http, @listener_options)
      end

    # Given in either; http:'s win.
    limits = Keyword.merge(Keyword.take(https || [], @limits), Keyword.take(http || [], @limits))

    static =
      case Keyword.get(config, :static) do
        nil -> nil
        static -> static |> Keyword.validate!([:from]) |> Keyword.fetch!(:from) |> Path.expand()
      end

    # Read by Fenix.Token through config/2, not by the engine.
    check!(config, :secret_key_base, &is_binary/1, "a string")

    # server: false (a generated config/test.exs has it): the configured addresses are
    # not served; the engine runs for broadcasts, presence and channel tests on a free
    # loopback port.
    {http, https} =
      if check!(config, :server, &is_boolean/1, "a boolean") == false,
        do: {%{ip: {127, 0, 0, 1}, port: 0}, nil},
        else: {http && address!(http), https && Map.merge(address!(https), tls)}

    %{
      http: http,
      https: https,
      head_timeout: check!(limits, :head_timeout, &positive_integer?/1, "a positive integer (ms)"),
      max_connections: check!(limits, :max_connections, &positive_integer?/1, "a positive integer"),
      max_connections_per_address: check!(limits, :max_connections_per_address, &positive_integer?/1, "a positive integer"),
      static: static,
      engine_threads: check!(config, :engine_threads, &(is_integer(&1) and &1 >= 0), "a non-negative integer"),
      tune_allocator: check!(config, :tune_allocator, &is_boolean/1, "a boolean"),
      check_origin: config |> Keyword.get(:check_origin, true) |> Fenix.Endpoint.Origin.parse!(),
      pubsub_server: check!(config, :pubsub_server, &is_atom/1, "the name of a Fenix.PubSub"),
      # Phoenix's default host, which check_origin: true compares origins with.
      url_host: config |> Keyword.get(:url, []) |> Keyword.get(:host, "localhost")
    }
  end

  defp address!(listener) do
    %{
      ip: check!(listener, :ip, &ip?/1, "an IP address tuple or string"),
      port: check!(listener, :port, &(&1 in 0..65_535), "a port number")
    }
  end

  # The option `key` of `options`, or nil when it is left out.
  defp check!(options, key, valid?, expected) do
    case Keyword.get(options, key) do
      nil ->
        nil

      value ->
        unless valid?.(value) do
          raise ArgumentError, "the #{inspect(key)} endpoint option must be #{expected}, got: #{inspect(value)}"
        end

        value
    end
  end

  defp positive_integer?(value), do: is_integer(value) and value > 0

  defp ip?(ip) when is_tuple(ip), do: is_list(:inet.ntoa(ip))
  defp ip?(ip) when is_binary(ip), do: match?({:ok, _}, ip |> String.to_charlist() |> :inet.parse_address())
  defp ip?(_ip), do: false

  @impl true
  def init({endpoint, raw_config, config}) do
    children = [
      Supervisor.child_spec({Fenix.Endpoint.Registration, {endpoint, raw_config}}, id: :registration),
      %{id: :engine, start: {__MODULE__, :start_engine, [endpoint, config]}, type: :supervisor},
      {Fenix.Endpoint.Drainer, endpoint}
    ]

    Supervisor.init(children, strategy: :rest_for_one)
  end

  @doc false
  def start_engine(endpoint, config) do
    children = [
      %{id: :channels, start: {__MODULE__, :start_channels, []}, type: :supervisor},
      %{id: :dispatcher, start: {__MODULE__, :start_dispatcher, [endpoint, config]}}
    ]

    Supervisor.start_link(children, strategy: :rest_for_one)
  end

  # A supervisor (here :engine) runs its children's start functions in its own process,
  # in the order of the children, and rest_for_one restarts a channel supervisor only
  # together with the dispatcher after it. So the pid that start_channels/0 leaves in this process's
  # dictionary is the current one whenever start_dispatcher/2 runs.
  @doc false
  def start_channels do
    with {:ok, pid} <- DynamicSupervisor.start_link(strategy: :one_for_one) do
      Process.put({__MODULE__, :channels}, pid)
      {:ok, pid}
    end
  end

  @doc false
  def start_dispatcher(endpoint, config) do
    Fenix.Endpoint.Dispatcher.start_link({endpoint, config, Process.get({__MODULE__, :channels})})
  end
end
