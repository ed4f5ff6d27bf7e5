defmodule Chat.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    port = String.to_integer(System.get_env("PORT", "4000"))

    endpoint_opts = [
      http: [ip: {127, 0, 0, 1}, port: port],
      static: [from: Application.app_dir(:chat, "priv/static")],
      pubsub_server: Chat.PubSub
    ]

    # rest_for_one: the presence tracks on the endpoint's engine, so it restarts with it.
    children = [{Fenix.PubSub, name: Chat.PubSub}, {Chat.Endpoint, endpoint_opts}, Chat.Presence]

    with {:ok, pid} <- Supervisor.start_link(children, strategy: :rest_for_one) do
      IO.puts("Chat demo listening on 127.0.0.1:#{Chat.Endpoint.port()} (open http://127.0.0.1:#{Chat.Endpoint.port()}/)")
      {:ok, pid}
    end
  end
end
