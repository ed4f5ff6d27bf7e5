defmodule Fenix.Channel.Client do
  @moduledoc false
  # The client end of a joined channel: where its join answer, pushes, replies and
  # close go. In production a channel of the engine (a NIF resource) that encodes them
  # for the connection; under Fenix.ChannelTest the test process (%Test{}), which gets
  # them as terms (%Fenix.Socket.Message{}, %Fenix.Socket.Reply{}), as Phoenix's
  # channel tests do. The channel server and Fenix.Channel are the same code for both:
  # the one branch is here, on the handle's type.

  alias Fenix.Native
  alias Fenix.Socket
  alias Fenix.Socket.{Message, Reply}

  defmodule Test do
    @moduledoc false
    # A channel joined by a test: `pid` is the test process, `answer` the tag of the
    # join's answer it waits for.
    defstruct [:pid, :answer, :topic, :join_ref]
  end

  @doc "The join was accepted: `{:ok, socket}` joined, or `{:error, reason}`."
  def joined(%Test{} = test, _join, reply, %Socket{} = socket) do
    socket = %{socket | joined: true, channel_ref: test, ref: nil}
    # Phoenix's fastlane: broadcasts to the topic reach the channel process.
    :ok = Fenix.PubSub.subscribe(Fenix.Endpoint.pubsub_server!(socket.endpoint), socket.topic)
    Process.monitor(test.pid)
    send(test.pid, {test.answer, {:ok, reply, socket}})
    {:ok, socket}
  end

  def joined(conn, join, reply, %Socket{channel: channel} = socket) do
    case Native.conn_joined(conn, join, reply, channel.__intercepts__()) do
      {pace, channel_ref, conn_id} when pace in [:ok, :wait] ->
        Native.await_pace(pace)
        {:ok, %{socket | joined: true, channel_ref: channel_ref, conn_id: conn_id, ref: nil}}

      {:error, _reason} = error ->
        error
    end
  end

  @doc "The join was refused with `reply`."
  def join_failed(%Test{} = test, _join, reply), do: send(test.pid, {test.answer, {:error, reply}})
  def join_failed(conn, join, reply), do: conn |> Native.conn_join_failed(join, reply) |> Native.await_pace()

  @doc "Pushes `event`: `:ok`, `:wait` or `{:error, reason}`, as the engine answers."
  def push(%Test{} = test, event, payload) do
    send(test.pid, %Message{topic: test.topic, event: event, payload: payload, join_ref: test.join_ref})
    :ok
  end

  def push(channel_ref, event, payload) do
    with :dirty <- Native.channel_push(channel_ref, event, payload) do
      Native.channel_push_dirty(channel_ref, event, payload)
    end
  end

  @doc """
  Pushes the presence state of `topic` in `hub`: as it was listed (`listed`), or as it
  is now (`:now`). `:changed` when the listed state is gone.
  """
  def push_presence_state(%Test{} = test, hub, topic, _listed, event) do
    {presences, _listed} = Native.presence_list(hub, topic)
    push(test, event, presences)
  end

  def push_presence_state(channel_ref, hub, topic, :now, event), do: Native.presence_push_state(hub, channel_ref, topic, event)
  def push_presence_state(channel_ref, hub, topic, listed, event), do: Native.presence_push_listed(hub, channel_ref, topic, listed, event)

  @doc "Replies to the push `ref`."
  def reply(%Test{} = test, ref, status, response) do
    send(test.pid, %Reply{topic: test.topic, status: status, payload: response, ref: ref, join_ref: test.join_ref})
    :ok
  end

  def reply(channel_ref, ref, status, response) do
    with :dirty <- Native.channel_reply(channel_ref, ref, status, response) do
      Native.channel_reply_dirty(channel_ref, ref, status, response)
    end
  end

  @doc "The channel stops for `reason`, a graceful one: the client is told phx_close."
  def close(%Test{} = test, reason), do: send(test.pid, {:socket_close, self(), reason})
  def close(channel_ref, _reason), do: Native.channel_close(channel_ref)

  @doc "A client message of `size` bytes is handled: the connection's credit back."
  def handled(%Test{}, _size), do: :ok
  def handled(channel_ref, size), do: Native.channel_handled(channel_ref, size)
end
