defmodule Fenix.Presence do
  @moduledoc ~S"""
  Who is on a topic, with the functions and wire format of `Phoenix.Presence`: the
  `phoenix` JavaScript client's `Presence` (`onJoin`, `onLeave`, `onSync`, `list`) works
  against it unchanged.

      defmodule MyAppWeb.Presence do
        use Fenix.Presence, otp_app: :my_app, endpoint: MyAppWeb.Endpoint
      end

  Start it after the endpoint, in the application's tree:

      children = [MyAppWeb.Endpoint, MyAppWeb.Presence]

  and track from a channel, as with Phoenix:

      def join("room:" <> _, _payload, socket) do
        send(self(), :after_join)
        {:ok, socket}
      end

      def handle_info(:after_join, socket) do
        push(socket, "presence_state", MyAppWeb.Presence.list(socket))
        {:ok, _ref} = MyAppWeb.Presence.track(socket, socket.assigns.user_id, %{online_at: System.system_time(:second)})
        {:noreply, socket}
      end

  ## How it works

  The state lives in the Rust engine, one topic at a time: `track/3`, `update/3` and
  `untrack/2` are short calls of the tracking process itself, never a call to a central
  process, so no call waits behind a busy topic, and `list/1` reads the topic directly.
  A tracked process is monitored: when it exits (leave, crash, a closed connection, a
  kill), all it tracked leaves. The changes of a topic are coalesced over a tick (see
  `:tick`) into one `presence_diff` broadcast: a thousand joins within a tick cost each
  member one frame, not a thousand; a join and a leave of the same meta within one tick
  cancel out. Every meta carries a unique `"phx_ref"`; an update is a leave of the old
  meta and a join of the new one with `"phx_ref_prev"`, as Phoenix sends them. A
  channel that intercepts `"presence_diff"` gets each diff in `handle_out/3` instead
  (`%{joins: presences, leaves: presences}`), as with any intercepted broadcast.

  `list/1` and `get_by_key/2` give the metas back as they were tracked, with `:phx_ref`
  (and `:phx_ref_prev`) put in, as Phoenix does: `%{name: "ann", phx_ref: "..."}`. The
  engine keeps each meta twice, as JSON for the clients and as its term, and a list of
  10,000 members is built in one step from the stored terms (about 10 ms, on a dirty
  scheduler).

  Pushing a list as it is, `push(socket, "presence_state", MyAppWeb.Presence.list(socket))`,
  does not encode it again: when the channel pushes the very map its last `list/1`
  (in the same callback) returned, and the topic has not changed since, the engine
  sends the state it encodes itself (under 1 ms for 10,000 members, against 6-7 ms to
  encode the terms). The result is the same frame; a list that was changed, or
  enriched by `c:fetch/2`, is encoded as any payload.

  ## Big topics: `push_state/1`

  `MyAppWeb.Presence.push_state(socket)` sends the same `presence_state` push without
  making the list at all: the engine encodes the topic's state straight into the
  frame. In a topic of 10,000 members that is about a millisecond instead of the
  list's 10 ms of terms (and the megabyte of heap they take in the channel's process),
  which is what decides how many joins a second a busy topic takes. In `make bench`'s
  presence scenario (1,000 clients joining a 10,000-member topic, server on one core)
  every list was complete after 4.2 s with `push_state/1` (3.4 s of server CPU), and
  after 17.8 s with `list/1` pushed (17.7 s of CPU):

      def handle_info(:after_join, socket) do
        :ok = MyAppWeb.Presence.push_state(socket)
        {:ok, _ref} = MyAppWeb.Presence.track(socket, socket.assigns.user_id, %{online_at: System.system_time(:second)})
        {:noreply, socket}
      end

  With `c:fetch/2` it pushes `list/1`'s result (fetch/2 must see the presences).

  ## Options

  Given to `use Fenix.Presence`, or to `start_link/1` (or the child spec) over them:

    * `:endpoint` - the `Fenix.Endpoint` whose topics are tracked (required).
    * `:otp_app` - the application, for the options in its config:
      `config :my_app, MyAppWeb.Presence, tick: 50`.
    * `:tick` - ms between two `presence_diff` broadcasts of a topic. Default: the
      engine's (20 ms).
    * `:max_meta_bytes` - the largest meta, in bytes of its JSON. Default: the engine's
      (8 KiB). A larger one is refused: `{:error, {:meta_too_large, message}}`.
    * `:max_entries` - the most entries of one topic. Default: the engine's (100,000).
      Beyond it: `{:error, {:presence_full, message}}`.

  ## Callbacks

  As in Phoenix, all optional:

    * `c:fetch/2` enriches the presences before they are sent: `list/1` and
      `get_by_key/2` give what it returns, and each tick's diff of a topic goes through
      it once (joins and leaves), not once per member. Without it the engine
      broadcasts each diff itself; with it, the presence module's process receives the
      diff, calls `fetch/2`, and broadcasts the result.
    * `c:init/1` and `c:handle_metas/4`: server-side reactions to joins and leaves. The
      presence module's process calls `handle_metas/4` with each tick's diff of a topic
      and the topic's presences after it, threading the state `init/1` returned.

  Not yet: replication between nodes (each node has its own presences).
  """

  alias Fenix.{Native, Socket}

  @typedoc "A presence key (as a string on the wire)."
  @type key :: String.t()
  @type meta :: map()
  @type presences :: %{key() => %{metas: [meta()]}}

  @doc "Tracks the channel's process under `key` on the socket's topic."
  @callback track(Socket.t(), key(), meta()) :: {:ok, binary()} | {:error, term()}
  @doc "Tracks `pid` under `key` on `topic`."
  @callback track(pid(), String.t(), key(), meta()) :: {:ok, binary()} | {:error, term()}
  @doc "Stops tracking the channel's process under `key`."
  @callback untrack(Socket.t(), key()) :: :ok
  @doc "Stops tracking `pid` under `key` on `topic`."
  @callback untrack(pid(), String.t(), key()) :: :ok
  @doc "Replaces the meta of the channel's process under `key` (a map, or a function of the old meta)."
  @callback update(Socket.t(), key(), meta() | (meta() -> meta())) :: {:ok, binary()} | {:error, term()}
  @doc "Replaces the meta of `pid` under `key` on `topic`."
  @callback update(pid(), String.t(), key(), meta() | (meta() -> meta())) :: {:ok, binary()} | {:error, term()}
  @doc "Everyone on a topic: `%{key => %{metas: [meta]}}`."
  @callback list(Socket.t() | String.t()) :: presences()
  @doc "Pushes `presence_state` (the topic's presences) to the channel's client, without making the list."
  @callback push_state(Socket.t()) :: :ok
  @doc "The metas of `key` on a topic: `%{metas: [meta]}`, or `[]`."
  @callback get_by_key(Socket.t() | String.t(), key()) :: %{metas: [meta()]} | []

  @doc """
  Enriches `presences` of `topic` before they are sent, e.g. with the users' records:

      def fetch(_topic, presences) do
        users = presences |> Map.keys() |> Accounts.get_users_map()
        for {key, %{metas: metas}} <- presences, into: %{} do
          {key, %{metas: metas, user: users[key]}}
        end
      end

  Called once per `list/1`, and once for the joins and once for the leaves of each
  tick's diff of a topic.
  """
  @callback fetch(topic :: String.t(), presences()) :: presences()

  @doc "The initial state of `c:handle_metas/4`, when the presence module starts (with its start options)."
  @callback init(keyword()) :: {:ok, state :: term()}

  @doc """
  Called in the presence module's process with each tick's diff of `topic`
  (`%{joins: presences, leaves: presences}`) and the topic's presences after it.
  """
  @callback handle_metas(topic :: String.t(), diff :: %{joins: presences(), leaves: presences()}, presences(), state :: term()) ::
              {:ok, term()}

  @optional_callbacks fetch: 2, init: 1, handle_metas: 4

  @doc false
  defmacro __using__(opts) do
    quote do
      @behaviour Fenix.Presence
      @fenix_presence_opts unquote(opts)

      def child_spec(opts) do
        %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, type: :worker}
      end

      def start_link(opts \\ []), do: Fenix.Presence.start_link(__MODULE__, @fenix_presence_opts, opts)

      @impl true
      def track(%Fenix.Socket{} = socket, key, meta), do: Fenix.Presence.track(__MODULE__, socket, key, meta)
      @impl true
      def track(pid, topic, key, meta), do: Fenix.Presence.track(__MODULE__, pid, topic, key, meta)
      @impl true
      def untrack(%Fenix.Socket{} = socket, key), do: Fenix.Presence.untrack(__MODULE__, socket, key)
      @impl true
      def untrack(pid, topic, key), do: Fenix.Presence.untrack(__MODULE__, pid, topic, key)
      @impl true
      def update(%Fenix.Socket{} = socket, key, meta), do: Fenix.Presence.update(__MODULE__, socket, key, meta)
      @impl true
      def update(pid, topic, key, meta), do: Fenix.Presence.update(__MODULE__, pid, topic, key, meta)
      @impl true
      def list(socket_or_topic), do: Fenix.Presence.list(__MODULE__, socket_or_topic)
      @impl true
      def push_state(%Fenix.Socket{} = socket), do: Fenix.Presence.push_state(__MODULE__, socket)
      @impl true
      def get_by_key(socket_or_topic, key), do: Fenix.Presence.get_by_key(__MODULE__, socket_or_topic, key)
    end
  end

  @doc false
  def start_link(module, use_opts, opts) do
    {otp_app, use_opts} = Keyword.pop(use_opts, :otp_app)
    config = if otp_app, do: Application.get_env(otp_app, module, []), else: []
    options = use_opts |> Keyword.merge(config) |> Keyword.merge(opts)
    {presence_options, init_options} = Keyword.split(options, [:endpoint, :tick, :max_meta_bytes, :max_entries])
    options = presence_options
    unless is_atom(options[:endpoint]) and options[:endpoint] != nil do
      raise ArgumentError, "#{inspect(module)} needs the :endpoint option (a Fenix.Endpoint module)"
    end

    for key <- [:tick, :max_meta_bytes, :max_entries], value = options[key], not (is_integer(value) and value > 0) do
      raise ArgumentError, "#{inspect(module)}: #{inspect(key)} must be a positive integer, got: #{inspect(value)}"
    end

    GenServer.start_link(Fenix.Presence.Server, {module, Map.new(options), init_options}, name: module)
  end

  @doc false
  def track(module, %Socket{channel_pid: pid, topic: topic}, key, meta), do: track(module, pid, topic, key, meta)

  def track(module, pid, topic, key, meta) when is_pid(pid) and is_binary(topic) and is_map(meta) do
    module |> hub!() |> Native.presence_track(pid, topic, to_string(key), without_refs(meta)) |> meta_result(meta)
  end

  @doc false
  def untrack(module, %Socket{channel_pid: pid, topic: topic}, key), do: untrack(module, pid, topic, key)

  def untrack(module, pid, topic, key) when is_pid(pid) and is_binary(topic) do
    module |> hub!() |> Native.presence_untrack(pid, topic, to_string(key))
  end

  @doc false
  def update(module, %Socket{channel_pid: pid, topic: topic}, key, meta), do: update(module, pid, topic, key, meta)

  def update(module, pid, topic, key, fun) when is_pid(pid) and is_binary(topic) and is_function(fun, 1) do
    case module |> hub!() |> Native.presence_meta(pid, topic, to_string(key)) do
      nil -> {:error, :nopresence}
      old -> update(module, pid, topic, key, fun.(old))
    end
  end

  def update(module, pid, topic, key, meta) when is_pid(pid) and is_binary(topic) and is_map(meta) do
    module |> hub!() |> Native.presence_update(pid, topic, to_string(key), without_refs(meta)) |> meta_result(meta)
  end

  @doc false
  # From the socket's own channel, a list that may be pushed as is (Fenix.Presence.Listed).
  def list(module, %Socket{topic: topic, channel_pid: pid}) when pid == self() do
    hub = hub!(module)
    {presences, listed} = Native.presence_list(hub, topic)

    if fetches?(module) do
      module.fetch(topic, presences)
    else
      Fenix.Presence.Listed.put(presences, hub, topic, listed)
    end
  end

  def list(module, %Socket{topic: topic}), do: list(module, topic)

  def list(module, topic) when is_binary(topic) do
    {presences, _listed} = module |> hub!() |> Native.presence_list(topic)
    fetched(module, topic, presences)
  end

  @doc false
  def push_state(module, %Socket{topic: topic} = socket) do
    if fetches?(module) do
      Fenix.Channel.push(socket, "presence_state", list(module, socket))
    else
      hub = hub!(module)
      Fenix.Channel.__push__(socket, nil, &Fenix.Channel.Client.push_presence_state(&1, hub, topic, :now, "presence_state"))
    end
  end

  @doc false
  def get_by_key(module, %Socket{topic: topic}, key), do: get_by_key(module, topic, key)

  def get_by_key(module, topic, key) when is_binary(topic) do
    key = to_string(key)

    case module |> hub!() |> Native.presence_get_by_key(topic, key) do
      [] -> []
      presence -> module |> fetched(topic, %{key => presence}) |> Map.get(key, [])
    end
  end

  @doc false
  # The presences of `topic` through the module's fetch/2, if it has one.
  def fetched(module, topic, presences) do
    if fetches?(module), do: module.fetch(topic, presences), else: presences
  end

  defp fetches?(module), do: function_exported?(module, :fetch, 2)

  # The server puts the refs in (as Phoenix's Map.put does): any given are dropped.
  defp without_refs(meta), do: Map.drop(meta, [:phx_ref, :phx_ref_prev])

  defp meta_result({:error, :unsupported_term}, meta), do: {:error, {:unsupported_meta, meta}}
  defp meta_result(result, _meta), do: result

  defp hub!(module) do
    case :persistent_term.get({Fenix.Presence, module}, nil) do
      nil -> raise ArgumentError, "#{inspect(module)} is not started"
      hub -> hub
    end
  end
end

defmodule Fenix.Presence.Listed do
  @moduledoc false
  # The last list a channel made of its own topic (Fenix.Presence.list/2 with the socket,
  # from the channel's process), so that Fenix.Channel.push/3 of that very map sends the
  # engine's encoding of the state instead of encoding the map's terms again. Kept in
  # the channel's process dictionary until it is pushed, the next list, or the end of
  # the callback (Fenix.Channel.Server forgets it): a list the channel keeps for other
  # uses is not held twice past that.

  @key __MODULE__

  @doc "Remembers `presences`, as the hub listed them; returns them."
  def put(presences, hub, topic, listed) do
    Process.put(@key, {presences, hub, topic, listed})
    presences
  end

  @doc "`{hub, topic, listed}` if `payload` is the remembered list, which is forgotten."
  def take(payload) when is_map(payload) do
    case Process.get(@key) do
      # An exact match, of the very same term in practice: a pointer comparison.
      {^payload, hub, topic, listed} ->
        Process.delete(@key)
        {hub, topic, listed}

      _ ->
        nil
    end
  end

  def take(_payload), do: nil

  @doc "Forgets the remembered list, if any."
  def forget, do: Process.delete(@key)
end

defmodule Fenix.Presence.Server do
  @moduledoc false
  # The process of a presence module: it starts the module's hub on the endpoint's
  # engine and registers it (a persistent term) for the calls of Fenix.Presence, which
  # go to the engine directly. When the module defines fetch/2 or handle_metas/4, the
  # hub hands it each tick's diff of a topic: fetch/2 runs here and the result is
  # broadcast from here; handle_metas/4 runs here with the state init/1 returned.
  #
  # A restarted endpoint dispatcher runs a new engine server, whose connections were all
  # closed and rejoin: the hub is then started anew on it (the old hub's tracked
  # processes were those connections' channels, which exited).

  use GenServer

  alias Fenix.Native

  @check_every 500

  @impl true
  def init({module, options, init_options}) do
    Process.flag(:trap_exit, true)
    {:ok, user_state} = if function_exported?(module, :init, 1), do: module.init(init_options), else: {:ok, nil}

    state = %{
      module: module,
      options: options,
      engine: nil,
      fetch?: function_exported?(module, :fetch, 2),
      handle_metas?: function_exported?(module, :handle_metas, 4),
      user_state: user_state
    }

    Process.send_after(self(), :check_engine, @check_every)
    {:ok, start_hub(state)}
  end

  @impl true
  def handle_info(:check_engine, state) do
    Process.send_after(self(), :check_engine, @check_every)
    state = if engine(state) == state.engine, do: state, else: start_hub(state)
    {:noreply, state}
  end

  def handle_info({:fenix_presence_diff, topic, %{joins: joins, leaves: leaves}}, state) do
    diff = %{
      joins: Fenix.Presence.fetched(state.module, topic, joins),
      leaves: Fenix.Presence.fetched(state.module, topic, leaves)
    }

    if state.fetch?, do: Fenix.Endpoint.broadcast(state.options.endpoint, topic, "presence_diff", diff)

    if state.handle_metas? do
      current = Fenix.Presence.list(state.module, topic)
      {:ok, user_state} = state.module.handle_metas(topic, diff, current, state.user_state)
      {:noreply, %{state | user_state: user_state}}
    else
      {:noreply, state}
    end
  end

  def handle_info(_message, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: :persistent_term.erase({Fenix.Presence, state.module})

  defp start_hub(state) do
    engine = engine(state)
    %{tick: tick, max_meta_bytes: max_meta, max_entries: max_entries} = Map.merge(%{tick: nil, max_meta_bytes: nil, max_entries: nil}, state.options)
    diffs_to = if state.fetch? or state.handle_metas?, do: self()
    {:ok, hub} = Native.presence_start(engine, tick, max_meta, max_entries, diffs_to, not state.fetch?)
    :persistent_term.put({Fenix.Presence, state.module}, hub)
    %{state | engine: engine}
  end

  defp engine(state), do: Fenix.Endpoint.engine!(state.options.endpoint)
end
