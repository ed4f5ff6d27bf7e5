defmodule Fenix.Application do
  @moduledoc false
  # The processes Fenix keeps for the whole VM, apart from any endpoint: the owner of
  # the cache of Fenix.Token's derived keys. Endpoints are started by the application
  # that uses Fenix, in its own tree.

  use Application

  @impl true
  def start(_type, _args) do
    Supervisor.start_link([Fenix.Token.KeyGenerator], strategy: :one_for_one, name: Fenix.Supervisor)
  end
end
