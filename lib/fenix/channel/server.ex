defmodule Fenix.Channel.Server do
  @moduledoc false
  # The process of one joined channel: the GenServer shell around a Fenix.Channel
  # module. Messages from the engine:
  #
  #   {:fenix_in, event, payload, ref, size}
  #                                      a client push          -> handle_in/3, then
  #                                                                the credit back
  #   {:fenix_leave, ref}                the client left         -> reply ok, phx_close, stop
  #   {:fenix_out, event, payload}       intercepted broadcast   -> handle_out/3
  #   {:fenix_closed, reason}            connection closed or
  #                                      topic joined again      -> stop {:shutdown, reason}
  #
  # and, from Fenix.PubSub.broadcast/3 to the channel's topic, any term (handle_info/2)
  # or a %Fenix.Socket.Broadcast{} of the topic (handle_out/3, as Phoenix).
  #   :fenix_resume                      late wake-up of a wait  -> ignored
  #
  # Credit: the engine stops reading a connection while its channels hold too many
  # unhandled client messages (see Fenix.Socket's :max_unhandled_messages), so every
  # {:fenix_in, ...} is acknowledged with its size once handled.
  #
  # A crash needs no code here: the engine monitors this process and sends phx_error.

  use GenServer, restart: :temporary

  require Logger

  alias Fenix.{Channel, Native, Socket}
  alias Fenix.Channel.Client
  alias Fenix.Socket.Broadcast

  @hibernate_after 15_000

  @spec start_link({Socket.t(), reference(), Native.join(), term()}) :: GenServer.on_start()
  def start_link(init) do
    GenServer.start_link(__MODULE__, init, hibernate_after: @hibernate_after)
  end

  @impl true
  def init({socket, conn, join, payload}) do
    {:ok, {socket, conn, join}, {:continue, {:join, payload}}}
  end

  @impl true
  def handle_continue({:join, payload}, {socket, conn, {topic, join_ref, ref} = join}) do
    socket = %{socket | channel_pid: self(), topic: topic, join_ref: join_ref, ref: ref}
    joining = run_join(socket, topic, payload)
    Fenix.Presence.Listed.forget()

    case joining do
      {:ok, reply, socket} ->
        joined(conn, join, reply, socket)

      {:error, reply} ->
        Client.join_failed(conn, join, reply)
        {:stop, :normal, socket}

      :crashed ->
        Client.join_failed(conn, join, %{reason: "join crashed"})
        {:stop, :normal, socket}
    end
  end

  defp run_join(%Socket{channel: channel} = socket, topic, payload) do
    case channel.join(topic, payload, socket) do
      {:ok, %Socket{} = socket} ->
        {:ok, %{}, socket}

      {:ok, reply, %Socket{} = socket} when is_map(reply) ->
        {:ok, reply, socket}

      {:error, reply} when is_map(reply) ->
        {:error, reply}

      other ->
        raise ArgumentError, """
        #{inspect(channel)}.join/3 returned an invalid value. Expected one of:

            {:ok, socket}
            {:ok, reply :: map, socket}
            {:error, reply :: map}

        got #{inspect(other)}
        """
    end
  catch
    kind, reason ->
      Logger.error(fn ->
        "#{inspect(channel)}.join/3 crashed for topic #{inspect(topic)}:\n" <>
          Exception.format(kind, reason, __STACKTRACE__)
      end)

      :crashed
  end

  defp joined(conn, join, reply, socket) do
    case Client.joined(conn, join, reply, socket) do
      {:ok, socket} ->
        Process.put(:fenix_conn_id, socket.conn_id)
        # Most channels then wait for messages: hibernating now gives the join's
        # garbage back at once, which is what an idle connection costs.
        {:noreply, socket, :hibernate}

      {:error, :unsupported_term} ->
        raise ArgumentError, "join reply cannot be encoded as JSON: #{inspect(reply)}"

      {:error, reason} when reason in [:closed, :stale] ->
        # The connection closed or the topic was joined again meanwhile.
        {:stop, {:shutdown, :closed}, socket}
    end
  end

  @impl true
  def handle_info({:fenix_in, event, payload, ref, size}, %Socket{channel: channel} = socket) do
    socket = %{socket | ref: ref}
    result = event |> channel.handle_in(payload, socket) |> handle_result(:handle_in, socket)
    Client.handled(socket.channel_ref, size)
    result
  end

  def handle_info(:fenix_resume, socket), do: {:noreply, socket}

  def handle_info({:fenix_leave, ref}, socket) do
    socket.channel_ref |> Client.reply(ref, :ok, %{}) |> Native.await_pace()
    Client.close(socket.channel_ref, {:shutdown, :left})
    {:stop, {:shutdown, :left}, socket}
  end

  def handle_info({:fenix_out, event, payload}, %Socket{channel: channel} = socket) do
    event
    |> channel.handle_out(payload, socket)
    |> handle_result(:handle_out, socket)
  end

  # A broadcast for this topic sent to the process itself (Fenix.PubSub.broadcast/3 of
  # a %Broadcast{}; under Fenix.ChannelTest every broadcast to the topic): handle_out/3
  # if the channel intercepts the event, else pushed, as the engine's fan-out does.
  def handle_info(%Broadcast{topic: topic, event: event, payload: payload}, %Socket{topic: topic, channel: channel} = socket) do
    if event in channel.__intercepts__() do
      event |> channel.handle_out(payload, socket) |> handle_result(:handle_out, socket)
    else
      Channel.push(socket, event, payload)
      {:noreply, socket}
    end
  end

  def handle_info({:fenix_closed, reason}, socket) do
    {:stop, {:shutdown, reason}, socket}
  end

  # The test process of a Fenix.ChannelTest join is gone: its "connection" closed.
  def handle_info({:DOWN, _, :process, pid, _reason}, %Socket{transport_pid: pid} = socket) when is_pid(pid) do
    {:stop, {:shutdown, :closed}, socket}
  end

  def handle_info(message, %Socket{channel: channel} = socket) do
    if function_exported?(channel, :handle_info, 2) do
      message
      |> channel.handle_info(socket)
      |> handle_result(:handle_info, socket)
    else
      Logger.error(
        "#{inspect(channel)} received an unexpected message in handle_info/2: #{inspect(message)}"
      )

      {:noreply, socket}
    end
  end

  @impl true
  def handle_call(message, from, %Socket{channel: channel} = socket) do
    message
    |> channel.handle_call(from, socket)
    |> handle_result(:handle_call, socket)
  end

  @impl true
  def handle_cast(message, %Socket{channel: channel} = socket) do
    message
    |> channel.handle_cast(socket)
    |> handle_result(:handle_cast, socket)
  end

  @impl true
  def code_change(old_vsn, %Socket{channel: channel} = socket, extra) do
    if function_exported?(channel, :code_change, 3), do: channel.code_change(old_vsn, socket, extra), else: {:ok, socket}
  end

  @impl true
  def terminate(reason, %Socket{channel: channel, joined: true} = socket) do
    if function_exported?(channel, :terminate, 2), do: channel.terminate(reason, socket)
  end

  def terminate(_reason, _socket), do: :ok

  defp handle_result(result, callback, old) do
    Fenix.Presence.Listed.forget()
    callback_result(result, callback, old)
  end

  defp callback_result({:reply, response, %Socket{} = socket}, :handle_call, _old) do
    {:reply, response, socket}
  end

  defp callback_result({:reply, reply, %Socket{} = socket}, :handle_in, _old) do
    send_reply(socket, reply)
    {:noreply, %{socket | ref: nil}}
  end

  defp callback_result({:stop, reason, reply, %Socket{} = socket}, :handle_in, _old) do
    send_reply(socket, reply)
    stop(reason, socket)
  end

  defp callback_result({:noreply, %Socket{} = socket}, _callback, _old),
    do: {:noreply, %{socket | ref: nil}}

  defp callback_result({:noreply, %Socket{} = socket, timeout_or_hibernate}, _callback, _old),
    do: {:noreply, %{socket | ref: nil}, timeout_or_hibernate}

  defp callback_result({:stop, reason, %Socket{} = socket}, _callback, _old), do: stop(reason, socket)

  defp callback_result(result, callback, %Socket{channel: channel}) do
    replies =
      case callback do
        :handle_in -> "\n    {:reply, {status, payload}, socket}\n    {:stop, reason, reply, socket}"
        :handle_call -> "\n    {:reply, response, socket}"
        _ -> ""
      end


    raise ArgumentError, """
    #{inspect(channel)}.#{callback} returned an invalid value. Expected one of:

        {:noreply, socket}
        {:noreply, socket, timeout | :hibernate}
        {:stop, reason, socket}#{replies}

    got #{inspect(result)}
    """
  end

  defp send_reply(socket, reply) do
    Channel.reply({:fenix_ref, socket.channel_ref, socket.ref}, reply)
  end

  # A graceful stop tells the client phx_close; any other reason is a crash, which the
  # engine reports as phx_error when this process exits.
  defp stop(reason, socket) do
    if graceful?(reason), do: Client.close(socket.channel_ref, reason)
    {:stop, reason, socket}
  end

  # Also the transport processes' rule (Fenix.Socket.Transport.Server): 1000 or 1011.
  @doc false
  def graceful?(:normal), do: true
  def graceful?(:shutdown), do: true
  def graceful?({:shutdown, _}), do: true
  def graceful?(_), do: false
end
