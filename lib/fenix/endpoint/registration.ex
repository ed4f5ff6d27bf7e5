defmodule Fenix.Endpoint.Registration do
  @moduledoc false
  # The endpoint's registration: the persistent term `{Fenix.Endpoint, endpoint}` that
  # holds its engine handle, through which broadcasts and `port/0` find it. The
  # dispatcher puts it each time it starts a server; this process, the first child of
  # the endpoint and so the last to stop, erases it when the endpoint shuts down, so
  # that later calls raise "not started".
  #
  # A crash or a kill keeps it: the restarted dispatcher of a port-0 endpoint reads the
  # port its predecessor got from it, so that reconnecting clients find the endpoint
  # where it was.
  #
  # It also holds the endpoint's config, the start_link/1 options merged over the
  # application config, in the persistent term `{Fenix.Endpoint, endpoint, :config}`
  # for config/2: put when this process starts, erased with the engine handle.

  use GenServer

  def start_link({endpoint, config}), do: GenServer.start_link(__MODULE__, {endpoint, config})

  @doc "The engine of `endpoint`, or nil."
  def engine(endpoint), do: :persistent_term.get({Fenix.Endpoint, endpoint}, nil)

  @doc "Registers `engine` as the engine of `endpoint`."
  def put(endpoint, engine), do: :persistent_term.put({Fenix.Endpoint, endpoint}, engine)

  @doc "The config `endpoint` was started with, or nil."
  def config(endpoint), do: :persistent_term.get({Fenix.Endpoint, endpoint, :config}, nil)

  @impl true
  def init({endpoint, config}) do
    # Trapped, so that the endpoint's shutdown runs terminate/2.
    Process.flag(:trap_exit, true)
    :persistent_term.put({Fenix.Endpoint, endpoint, :config}, config)
    {:ok, endpoint}
  end

  @impl true
  def terminate(reason, endpoint) do
    if reason in [:normal, :shutdown] or match?({:shutdown, _}, reason) do
      :persistent_term.erase({Fenix.Endpoint, endpoint})
      :persistent_term.erase({Fenix.Endpoint, endpoint, :config})
    end
  end
end
