defmodule Fenix.ChannelTest do
  @moduledoc """
  Conveniences for testing channels, with the API of `Phoenix.ChannelTest`: a channel
  test written for Phoenix runs against Fenix once `Phoenix.` is renamed `Fenix.`.

      defmodule MyAppWeb.RoomChannelTest do
        use ExUnit.Case, async: true
        import Fenix.ChannelTest

        @endpoint MyAppWeb.Endpoint

        setup do
          {:ok, _, socket} =
            MyAppWeb.UserSocket
            |> socket("user_id", %{some: :assign})
            |> subscribe_and_join(MyAppWeb.RoomChannel, "room:lobby")

          %{socket: socket}
        end

        test "ping replies with status ok", %{socket: socket} do
          ref = push(socket, "ping", %{"hello" => "there"})
          assert_reply ref, :ok, %{"hello" => "there"}
        end

        test "shout broadcasts to room:lobby", %{socket: socket} do
          push(socket, "shout", %{"hello" => "all"})
          assert_broadcast "shout", %{"hello" => "all"}
        end

        test "broadcasts are pushed to the client", %{socket: socket} do
          broadcast_from!(socket, "broadcast", %{"some" => "data"})
          assert_push "broadcast", %{"some" => "data"}
        end
      end

  Define `@endpoint` in the test module: the endpoint must be running (started by the
  application, as in Phoenix; `server: false` in the test config keeps it from
  listening) and have a `:pubsub_server`.

  ## How a test talks to a channel

  The test process plays the client. `join/4` starts the channel's process, the same
  `Fenix.Channel` server as in production, linked to the test process, and runs
  `join/3`; `push/3` hands it a message (`handle_in/3`); what the channel pushes and
  replies comes back to the test process as `%Fenix.Socket.Message{}` and
  `%Fenix.Socket.Reply{}` (matched by `assert_push/3` and `assert_reply/4`).
  `subscribe_and_join/4` also subscribes the test process to the topic, which then gets
  each broadcast as a `%Fenix.Socket.Broadcast{}` (`assert_broadcast/3`).

  How it differs from a real connection, as Phoenix's channel tests do:

    * Nothing is encoded: payloads are compared as the terms the channel gave, atom keys
      included, and a payload JSON cannot carry is not an error. `push/3` and `join/4`
      turn atom keys into strings first, as a client's JSON would.
    * The channel process subscribes to its topic on the endpoint's PubSub server
      instead of being a member in the engine: broadcasts reach it as
      `%Fenix.Socket.Broadcast{}` and are pushed to the test (or given to `handle_out/3`
      when the channel intercepts the event), as the engine's fan-out would.
    * No limits apply (frame sizes, rates, credit) and there is no heartbeat.
    * A channel that stops gracefully sends the test `{:socket_close, channel_pid,
      reason}`; one that stops for any other reason takes the linked test process down,
      as in Phoenix (`Process.unlink(socket.channel_pid)` to test for it).

  Timeouts of the assertions default to ExUnit's `:assert_receive_timeout` and
  `:refute_receive_timeout`. Patterns may have a guard:
  `assert_push "count", %{"n" => n} when n > 2`.
  """

  alias Fenix.Channel.Client
  alias Fenix.Socket
  alias Fenix.Socket.{Broadcast, Message, Reply}

  @doc false
  defmacro __using__(_) do
    quote do
      import Fenix.ChannelTest
    end
  end

  @doc "A socket of `socket_module` on `@endpoint`, without id or assigns."
  defmacro socket(socket_module) do
    build_socket(socket_module, nil, Macro.escape(%{}), [], __CALLER__)
  end

  @doc """
  A socket of `socket_module` on `@endpoint` with `id` and `assigns`, as its `connect/3`
  would have made it.

      socket(MyAppWeb.UserSocket, "user_id", %{some: :assign})
  """
  defmacro socket(socket_module, id, assigns) do
    build_socket(socket_module, id, assigns, [], __CALLER__)
  end

  @doc "As `socket/3`; `options` may name another `endpoint:` than `@endpoint`."
  defmacro socket(socket_module, id, assigns, options) do
    build_socket(socket_module, id, assigns, options, __CALLER__)
  end

  defp build_socket(socket_module, id, assigns, options, caller) do
    endpoint = Keyword.get(options, :endpoint) || endpoint!(caller)

    quote do
      Fenix.ChannelTest.__socket__(unquote(endpoint), unquote(socket_module), unquote(id), unquote(assigns))
    end
  end

  @doc false
  def __socket__(endpoint, socket_module, id, assigns) do
    %Socket{
      assigns: Enum.into(assigns, %{}),
      endpoint: endpoint,
      handler: socket_module,
      id: id,
      transport: :channel_test,
      transport_pid: self()
    }
  end

  @doc """
  Runs `handler`'s `connect/3` with `params` (keys made strings) and `id/1`, as a client's
  connect would: `{:ok, socket}`, `:error` or `{:error, reason}`. Options:
  `connect_info:` (default `%{}`); a map as third argument is the connect info, as in
  Phoenix 1.7.
  """
  defmacro connect(handler, params, options \\ quote(do: [])) do
    endpoint = endpoint!(__CALLER__)

    quote do
      Fenix.ChannelTest.__connect__(unquote(endpoint), unquote(handler), unquote(params), unquote(options))
    end
  end

  @doc false
  def __connect__(endpoint, handler, params, options) do
    connect_info = if is_map(options), do: options, else: Keyword.get(options, :connect_info, %{})

    with {:ok, socket} <- Socket.__connect__(endpoint, handler, __stringify__(params), connect_info, :v2) do
      {:ok, %{socket | transport: :channel_test, transport_pid: self()}}
    end
  end

  @doc "See `subscribe_and_join/4`."
  def subscribe_and_join(%Socket{} = socket, topic) when is_binary(topic),
    do: subscribe_and_join(socket, nil, topic, %{})

  @doc "See `subscribe_and_join/4`."
  def subscribe_and_join(%Socket{} = socket, topic, payload) when is_binary(topic) and is_map(payload),
    do: subscribe_and_join(socket, nil, topic, payload)

  @doc """
  Subscribes the test process to `topic` (for `assert_broadcast/3`), then joins it as
  `join/4` does: `{:ok, reply, socket}` or `{:error, reply}`.
  """
  def subscribe_and_join(%Socket{} = socket, channel, topic, payload \\ %{})
      when is_atom(channel) and is_binary(topic) and is_map(payload) do
    :ok = socket.endpoint.subscribe(topic)
    join(socket, channel, topic, payload)
  end

  @doc "See `subscribe_and_join!/4`."
  def subscribe_and_join!(%Socket{} = socket, topic) when is_binary(topic),
    do: subscribe_and_join!(socket, nil, topic, %{})

  @doc "See `subscribe_and_join!/4`."
  def subscribe_and_join!(%Socket{} = socket, topic, payload) when is_binary(topic) and is_map(payload),
    do: subscribe_and_join!(socket, nil, topic, payload)

  @doc "As `subscribe_and_join/4`, but returns the socket, or raises if the join is refused."
  def subscribe_and_join!(%Socket{} = socket, channel, topic, payload \\ %{})
      when is_atom(channel) and is_binary(topic) and is_map(payload) do
    case subscribe_and_join(socket, channel, topic, payload) do
      {:ok, _reply, socket} -> socket
      {:error, reply} -> raise "could not join channel, got error: #{inspect(reply)}"
    end
  end

  @doc "See `join/4`."
  def join(%Socket{} = socket, topic) when is_binary(topic), do: join(socket, nil, topic, %{})

  @doc "See `join/4`."
  def join(%Socket{} = socket, topic, payload) when is_binary(topic) and is_map(payload),
    do: join(socket, nil, topic, payload)

  @doc """
  Joins `topic` with `payload` on `channel` (nil: the socket's route for the topic, with
  its `assigns:`), in a channel process linked to the test process: `{:ok, reply,
  socket}`, where `socket` is the channel's, or `{:error, reply}`.
  """
  def join(%Socket{} = socket, channel, topic, payload \\ %{})
      when is_atom(channel) and is_binary(topic) and is_map(payload) do
    {channel, assigns} = route!(socket, channel, topic)
    socket = %{socket | channel: channel, assigns: Map.merge(socket.assigns, assigns)}
    answer = make_ref()
    join_ref = System.unique_integer([:positive])
    test = %Client.Test{pid: self(), answer: answer, topic: topic, join_ref: join_ref}
    {:ok, pid} = GenServer.start(Fenix.Channel.Server, {socket, test, {topic, join_ref, join_ref}, __stringify__(payload)})
    monitor = Process.monitor(pid)

    receive do
      {^answer, {:ok, reply, socket}} ->
        Process.demonitor(monitor, [:flush])
        Process.link(pid)
        {:ok, reply, socket}

      {^answer, {:error, reply}} ->
        Process.demonitor(monitor, [:flush])
        {:error, reply}

      {:DOWN, ^monitor, _, _, _reason} ->
        {:error, %{reason: "join crashed"}}
    end
  end

  defp route!(_socket, channel, _topic) when channel != nil, do: {channel, %{}}

  defp route!(%Socket{handler: nil}, nil, topic) do
    raise "no socket handler found to look up the channel of #{inspect(topic)}: build the socket with socket/3 or connect/3"
  end

  defp route!(%Socket{handler: handler}, nil, topic) do
    case handler.__channel__(topic) do
      {channel, opts} -> {channel, Map.new(Keyword.get(opts, :assigns, %{}))}
      nil -> raise "no channel found for topic #{inspect(topic)} in #{inspect(handler)}"
    end
  end

  @doc """
  Pushes `event` with `payload` (keys made strings) to the channel (`handle_in/3`), as a
  client would. Returns the push's ref, for `assert_reply/4`.
  """
  @spec push(Socket.t(), String.t(), map()) :: reference()
  def push(%Socket{channel_pid: pid}, event, payload \\ %{}) when is_binary(event) do
    ref = make_ref()
    send(pid, {:fenix_in, event, __stringify__(payload), ref, 0})
    ref
  end

  @doc "Leaves the channel, as a client's `phx_leave`. Returns the ref its `:ok` reply has."
  @spec leave(Socket.t()) :: reference()
  def leave(%Socket{channel_pid: pid}) do
    ref = make_ref()
    send(pid, {:fenix_leave, ref})
    ref
  end

  @doc """
  Closes the channel as a closed connection would, and waits until its process is gone
  (killed after `timeout` ms).
  """
  @spec close(Socket.t(), timeout()) :: :ok
  def close(%Socket{channel_pid: pid}, timeout \\ 5_000) do
    monitor = Process.monitor(pid)
    Process.unlink(pid)
    send(pid, {:fenix_closed, :closed})

    receive do
      {:DOWN, ^monitor, _, _, _} -> :ok
    after
      timeout ->
        Process.exit(pid, :kill)
        receive do: ({:DOWN, ^monitor, _, _, _} -> :ok)
    end
  end

  @doc """
  Broadcasts `event` to the socket's topic from the test process, which does not get
  it: the channel does (pushed to the test, or `handle_out/3` if it intercepts it).
  """
  @spec broadcast_from(Socket.t(), String.t(), term()) :: :ok | {:error, term()}
  def broadcast_from(%Socket{endpoint: endpoint, topic: topic}, event, payload) do
    endpoint.broadcast_from(self(), topic, event, payload)
  end

  @doc "Same as `broadcast_from/3`, but raises if the broadcast fails."
  @spec broadcast_from!(Socket.t(), String.t(), term()) :: :ok
  def broadcast_from!(%Socket{endpoint: endpoint, topic: topic}, event, payload) do
    endpoint.broadcast_from!(self(), topic, event, payload)
  end

  @doc """
  Asserts that the channel pushed `event` with `payload` (patterns) within `timeout` ms.

      assert_push "new_msg", %{"body" => _}
  """
  defmacro assert_push(event, payload, timeout \\ Application.fetch_env!(:ex_unit, :assert_receive_timeout)) do
    received(:assert_receive, quote(do: %Message{event: unquote(event)}), :payload, payload, timeout)
  end

  @doc "Asserts that the channel pushes no `event` with `payload` (patterns) within `timeout` ms."
  defmacro refute_push(event, payload, timeout \\ Application.fetch_env!(:ex_unit, :refute_receive_timeout)) do
    received(:refute_receive, quote(do: %Message{event: unquote(event)}), :payload, payload, timeout)
  end

  @doc """
  Asserts that the channel replied to the push `ref` with `status` and `payload`
  (patterns) within `timeout` ms.

      ref = push(socket, "ping", %{})
      assert_reply ref, :ok, %{}
  """
  defmacro assert_reply(ref, status, payload \\ Macro.escape(%{}), timeout \\ Application.fetch_env!(:ex_unit, :assert_receive_timeout)) do
    reply(:assert_receive, ref, status, payload, timeout)
  end

  @doc "Asserts that the channel does not reply to `ref` as given (patterns) within `timeout` ms."
  defmacro refute_reply(ref, status, payload \\ Macro.escape(%{}), timeout \\ Application.fetch_env!(:ex_unit, :refute_receive_timeout)) do
    reply(:refute_receive, ref, status, payload, timeout)
  end

  @doc """
  Asserts that `event` with `payload` (patterns) was broadcast to a topic the test
  process is subscribed to (see `subscribe_and_join/4`) within `timeout` ms.
  """
  defmacro assert_broadcast(event, payload, timeout \\ Application.fetch_env!(:ex_unit, :assert_receive_timeout)) do
    received(:assert_receive, quote(do: %Broadcast{event: unquote(event)}), :payload, payload, timeout)
  end

  @doc "Asserts that no `event` with `payload` (patterns) is broadcast within `timeout` ms."
  defmacro refute_broadcast(event, payload, timeout \\ Application.fetch_env!(:ex_unit, :refute_receive_timeout)) do
    received(:refute_receive, quote(do: %Broadcast{event: unquote(event)}), :payload, payload, timeout)
  end

  defp reply(assertion, ref, status, payload, timeout) do
    pattern = quote(do: %Reply{ref: ^ref, status: unquote(status)})

    quote do
      ref = unquote(ref)
      unquote(received(assertion, pattern, :payload, payload, timeout))
    end
  end

  # `assertion` of the struct `pattern` with `field` matching `value`, a pattern that
  # may carry a guard (`value when guard`), which then guards the whole pattern.
  defp received(assertion, {:%, meta, [struct, {:%{}, map_meta, fields}]}, field, value, timeout) do
    {value, guard} =
      case value do
        {:when, _, [value, guard]} -> {value, guard}
        value -> {value, nil}
      end

    pattern = {:%, meta, [struct, {:%{}, map_meta, fields ++ [{field, value}]}]}
    pattern = if guard, do: {:when, [], [pattern, guard]}, else: pattern

    quote do
      ExUnit.Assertions.unquote(assertion)(unquote(pattern), unquote(timeout))
    end
  end

  defp endpoint!(caller) do
    Module.get_attribute(caller.module, :endpoint) ||
      raise "module attribute @endpoint not set for #{inspect(caller.module)}: Fenix.ChannelTest needs the endpoint"
  end

  @doc false
  # Keys made strings, as a client's JSON would give them; structs stay as they are.
  def __stringify__(%{__struct__: _} = struct), do: struct
  def __stringify__(%{} = map), do: Map.new(map, fn {key, value} -> {to_string(key), __stringify__(value)} end)
  def __stringify__(list) when is_list(list), do: Enum.map(list, &__stringify__/1)
  def __stringify__(other), do: other
end
