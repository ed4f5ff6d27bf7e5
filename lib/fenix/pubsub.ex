defmodule Fenix.PubSub do
  @moduledoc """
  Publish and subscribe, with the API of `Phoenix.PubSub` 2.x: processes subscribe to
  topics and receive every message broadcast to them.

  Start a server in the application's supervision tree, as a Phoenix app does, and name
  it in the endpoint's config so that the endpoint's broadcasts reach its subscribers:

      children = [
        {Fenix.PubSub, name: MyApp.PubSub},
        MyAppWeb.Endpoint
      ]

      config :my_app, MyAppWeb.Endpoint, pubsub_server: MyApp.PubSub

  Then any process, anywhere in the app:

      :ok = Fenix.PubSub.subscribe(MyApp.PubSub, "user:123")
      :ok = Fenix.PubSub.broadcast(MyApp.PubSub, "user:123", {:user_update, %{id: 123}})

      receive do
        {:user_update, user} -> ...
      end

  ## What subscribers receive

    * `broadcast/3` and its variants send the message as it is, to every process
      subscribed to the topic **and** to every channel process joined to the topic on
      the endpoints that use this server (as Phoenix's default dispatcher does): a
      channel gets it in `c:Fenix.Channel.handle_info/2`, or, when it is a
      `%Fenix.Socket.Broadcast{}` for the channel's own topic, in
      `c:Fenix.Channel.handle_out/3` (pushed to the client when the channel has none).
    * The endpoint's broadcasts (`MyAppWeb.Endpoint.broadcast/3`), and the presence diffs
      of its `Fenix.Presence` modules, reach the topic's clients as frames, encoded once,
      and each subscribed process as a `%Fenix.Socket.Broadcast{topic:, event:,
      payload:}`, sent once. A channel process may subscribe to other topics
      (`MyAppWeb.Endpoint.subscribe/1`) and gets their broadcasts in `handle_info/2`.
    * A process that subscribes twice to a topic gets each message twice, as with
      Phoenix.PubSub; `unsubscribe/2` removes all of its subscriptions to the topic. A
      process that exits is unsubscribed from everything.

  ## How it works

  The subscriptions are kept in the Rust engine, beside the endpoints' own topic
  registries: a broadcast is one call that sends to the subscribers in the caller (a
  dirty scheduler when there are more than a few hundred, or the message is large) and
  queues the frames for the sockets. A topic without subscribed processes costs a
  broadcast one lookup. The server's state lives as long as the VM: a restart of the
  `Fenix.PubSub` process loses no subscription, and the endpoints keep theirs.

  ## Several nodes

  `node_name/1` and `direct_broadcast/5` are here so that code written for several
  nodes keeps its shape; today a server serves its own node, and a broadcast reaches
  the subscribers of that node (`broadcast/3` and `local_broadcast/3` are the same).

  ## Dispatchers

  Like Phoenix.PubSub, every broadcast function takes a `dispatcher` module as its last
  argument (default `Fenix.PubSub`): `dispatcher.dispatch(entries, from, message)` is
  called in the broadcasting process with the topic's `[{pid, metadata}]` (the
  `metadata:` given to `subscribe/3`; channel processes of the topic come last, with
  `nil`), `from` being the excluded pid or `:none`.
  """

  use GenServer

  alias Fenix.Native

  @typedoc "The name of a PubSub server."
  @type t :: atom()
  @typedoc "A topic."
  @type topic :: String.t()
  @typedoc "A message: any term."
  @type message :: term()
  @typedoc "A module with `dispatch/3`."
  @type dispatcher :: module()

  defmodule BroadcastError do
    defexception [:message]
  end

  @doc """
  A child spec, for `{Fenix.PubSub, name: MyApp.PubSub}`. Phoenix.PubSub's `:adapter`,
  `:pool_size`, `:broadcast_pool_size` and `:registry_size` options are accepted and
  have nothing to tune here.
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(options) when is_list(options) do
    name = Keyword.fetch!(options, :name)
    %{id: name, start: {__MODULE__, :start_link, [options]}}
  end

  @doc "Starts the server `options[:name]`."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(options) do
    options = Keyword.validate!(options, [:name, :adapter, :pool_size, :broadcast_pool_size, :registry_size])
    name = Keyword.fetch!(options, :name)

    unless is_atom(name) and name != nil do
      raise ArgumentError, "the :name of a Fenix.PubSub must be an atom, got: #{inspect(name)}"
    end

    GenServer.start_link(__MODULE__, name, name: name)
  end

  @impl true
  def init(name) do
    # The first start makes the state; a restart finds it (see "How it works").
    if :persistent_term.get({__MODULE__, name}, nil) == nil do
      :persistent_term.put({__MODULE__, name}, Native.pubsub_new())
    end

    {:ok, name}
  end

  @doc """
  Subscribes the caller to `topic`. Options: `metadata:`, a term handed to
  dispatchers with the caller's pid.
  """
  @spec subscribe(t(), topic(), keyword()) :: :ok | {:error, term()}
  def subscribe(pubsub, topic, options \\ []) when is_binary(topic) do
    options = Keyword.validate!(options, metadata: nil)
    pubsub |> state!() |> Native.pubsub_subscribe(topic, options[:metadata])
  end

  @doc "Unsubscribes the caller from `topic` (every subscription it made to it)."
  @spec unsubscribe(t(), topic()) :: :ok
  def unsubscribe(pubsub, topic) when is_binary(topic) do
    pubsub |> state!() |> Native.pubsub_unsubscribe(topic)
  end

  @doc "Broadcasts `message` to every subscriber of `topic` (see the moduledoc)."
  @spec broadcast(t(), topic(), message(), dispatcher()) :: :ok | {:error, term()}
  def broadcast(pubsub, topic, message, dispatcher \\ __MODULE__) when is_binary(topic) do
    local_broadcast(pubsub, topic, message, dispatcher)
  end

  @doc "Same as `broadcast/4`, but raises `Fenix.PubSub.BroadcastError` if it fails."
  @spec broadcast!(t(), topic(), message(), dispatcher()) :: :ok
  def broadcast!(pubsub, topic, message, dispatcher \\ __MODULE__) do
    pubsub |> broadcast(topic, message, dispatcher) |> ok!()
  end

  @doc "Broadcasts `message` to every subscriber of `topic` but the process `from`."
  @spec broadcast_from(t(), pid(), topic(), message(), dispatcher()) :: :ok | {:error, term()}
  def broadcast_from(pubsub, from, topic, message, dispatcher \\ __MODULE__) when is_pid(from) and is_binary(topic) do
    local_broadcast_from(pubsub, from, topic, message, dispatcher)
  end

  @doc "Same as `broadcast_from/5`, but raises `Fenix.PubSub.BroadcastError` if it fails."
  @spec broadcast_from!(t(), pid(), topic(), message(), dispatcher()) :: :ok
  def broadcast_from!(pubsub, from, topic, message, dispatcher \\ __MODULE__) do
    pubsub |> broadcast_from(from, topic, message, dispatcher) |> ok!()
  end

  @doc "Broadcasts `message` to the subscribers of `topic` on this node."
  @spec local_broadcast(t(), topic(), message(), dispatcher()) :: :ok
  def local_broadcast(pubsub, topic, message, dispatcher \\ __MODULE__) when is_binary(topic) do
    dispatch(state!(pubsub), topic, message, :none, dispatcher)
  end

  @doc "Broadcasts `message` to the subscribers of `topic` on this node but the process `from`."
  @spec local_broadcast_from(t(), pid(), topic(), message(), dispatcher()) :: :ok
  def local_broadcast_from(pubsub, from, topic, message, dispatcher \\ __MODULE__) when is_pid(from) and is_binary(topic) do
    dispatch(state!(pubsub), topic, message, from, dispatcher)
  end

  @doc """
  Broadcasts `message` to the subscribers of `topic` on the node `node_name` (see
  `node_name/1`). Today only this node's name is served: any other is an error.
  """
  @spec direct_broadcast(node(), t(), topic(), message(), dispatcher()) :: :ok | {:error, term()}
  def direct_broadcast(node_name, pubsub, topic, message, dispatcher \\ __MODULE__) when is_binary(topic) do
    if node_name == node_name(pubsub) do
      local_broadcast(pubsub, topic, message, dispatcher)
    else
      {:error, {:unknown_node, node_name}}
    end
  end

  @doc "Same as `direct_broadcast/5`, but raises `Fenix.PubSub.BroadcastError` if it fails."
  @spec direct_broadcast!(node(), t(), topic(), message(), dispatcher()) :: :ok
  def direct_broadcast!(node_name, pubsub, topic, message, dispatcher \\ __MODULE__) do
    node_name |> direct_broadcast(pubsub, topic, message, dispatcher) |> ok!()
  end

  @doc "The name of this node as `pubsub` knows it: `node()`."
  @spec node_name(t()) :: node()
  def node_name(pubsub) do
    _ = state!(pubsub)
    node()
  end

  @doc """
  The default dispatcher: sends `message` to every entry's pid but `from`. Called by
  custom dispatchers that only filter, as in Phoenix.PubSub.
  """
  @spec dispatch([{pid(), term()}], pid() | :none, message()) :: :ok
  def dispatch(entries, from, message) do
    for {pid, _metadata} <- entries, pid != from, do: send(pid, message)
    :ok
  end

  @doc false
  # The engine state of `pubsub`, for the endpoints that use it.
  @spec __state__(t()) :: Native.pubsub()
  def __state__(pubsub), do: state!(pubsub)

  defp state!(pubsub) do
    case :persistent_term.get({__MODULE__, pubsub}, nil) do
      nil -> raise ArgumentError, "unknown Fenix.PubSub server: #{inspect(pubsub)}; start {Fenix.PubSub, name: #{inspect(pubsub)}} first"
      state -> state
    end
  end

  # The default dispatcher runs in the engine, without making the entries.
  defp dispatch(state, topic, message, from, __MODULE__) do
    from = if from == :none, do: nil, else: from

    case Native.pubsub_dispatch(state, topic, message, from) do
      :dirty -> Native.pubsub_dispatch_dirty(state, topic, message, from)
      :ok -> :ok
    end
  end

  defp dispatch(state, topic, message, from, dispatcher) do
    dispatcher.dispatch(Native.pubsub_entries(state, topic), from, message)
    :ok
  end

  defp ok!(:ok), do: :ok
  defp ok!({:error, reason}), do: raise(BroadcastError, "broadcast failed: #{inspect(reason)}")
end
