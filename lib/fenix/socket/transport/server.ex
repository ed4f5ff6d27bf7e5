defmodule Fenix.Socket.Transport.Server do
  @moduledoc false
  # The process of one raw connection: the GenServer shell around a
  # Fenix.Socket.Transport module. It accepts the connection itself (so that the engine
  # hands every message to this process from the first one on), then runs init/1.
  # Messages from the engine:
  #
  #   {:fenix_frame, :text | :binary, data}   a client message -> handle_in/2, then the
  #                                                                credit back
  #   {:fenix_control, :ping | :pong, payload}                   -> handle_control/2 (only
  #                                                                if the module has it)
  #   {:fenix_closed, reason}                 the connection is gone -> terminate/2, stop
  #   :fenix_resume                           late wake-up of a wait -> ignored
  #
  # Credit: the engine stops reading the connection while this process holds too many
  # unhandled messages (Fenix.Socket's :max_unhandled_messages), so each one is
  # acknowledged with its size once handled.
  #
  # A crash needs no code here: the engine monitors this process and closes the
  # connection with 1011.

  use GenServer, restart: :temporary

  alias Fenix.Native

  # As a channel process: an idle connection gives its garbage back.
  @hibernate_after 15_000

  @spec start_link({module(), term(), Native.conn()}) :: GenServer.on_start()
  def start_link(init), do: GenServer.start_link(__MODULE__, init, hibernate_after: @hibernate_after)

  @impl true
  def init({module, state, conn}) do
    {:ok, %{module: module, state: state, transport: nil, closed: nil}, {:continue, {:accept, conn}}}
  end

  @impl true
  def handle_continue({:accept, conn}, %{module: module} = server) do
    case Native.conn_accept_transport(conn, function_exported?(module, :handle_control, 2)) do
      {:ok, transport} ->
        {:noreply, %{server | transport: transport, state: run_init(module, server.state)}}

      {:error, :closed} ->
        # The client went away, or connect/1 took longer than the socket's
        # connect_timeout: never initialized, so terminate/2 is not called.
        {:stop, :normal, server}
    end
  end

  defp run_init(module, state) do
    case module.init(state) do
      {:ok, state} -> state
      other -> raise ArgumentError, "#{inspect(module)}.init/1 returned an invalid value. Expected {:ok, state}, got #{inspect(other)}"
    end
  end

  @impl true
  def handle_info({:fenix_frame, opcode, data}, %{module: module} = server) do
    result = module.handle_in({data, opcode: opcode}, server.state)
    Native.transport_handled(server.transport, byte_size(data))
    handle_result(result, :handle_in, server)
  end

  def handle_info({:fenix_control, opcode, payload}, %{module: module} = server) do
    result = module.handle_control({payload, opcode: opcode}, server.state)
    Native.transport_handled(server.transport, if(payload, do: byte_size(payload), else: 0))
    handle_result(result, :handle_control, server)
  end

  # A {:shutdown, _} reason: the connection ending is no error for the supervisor.
  def handle_info({:fenix_closed, reason}, server), do: {:stop, {:shutdown, reason}, %{server | closed: reason}}

  def handle_info(:fenix_resume, server), do: {:noreply, server}

  def handle_info(message, %{module: module} = server) do
    message |> module.handle_info(server.state) |> handle_result(:handle_info, server)
  end

  @impl true
  def terminate(_reason, %{transport: nil}), do: :ok

  # terminate/2 gets the reason the engine gave when the connection closed, else the
  # process's own (a {:stop, reason, state}, or a crash).
  def terminate(reason, %{module: module, closed: closed} = server) do
    module.terminate(closed || reason, server.state)
  end

  defp handle_result({:ok, state}, _callback, server), do: {:noreply, %{server | state: state}}

  defp handle_result({:push, {opcode, message}, state}, _callback, server) when opcode in [:text, :binary] do
    push(server.transport, opcode, message)
    {:noreply, %{server | state: state}}
  end

  defp handle_result({:reply, status, {opcode, message}, state}, _callback, server)
       when status in [:ok, :error] and opcode in [:text, :binary] do
    push(server.transport, opcode, message)
    {:noreply, %{server | state: state}}
  end

  defp handle_result({:stop, reason, state}, _callback, server) do
    server.transport |> Native.transport_close(Fenix.Channel.Server.graceful?(reason)) |> Native.await_pace()
    {:stop, reason, %{server | state: state}}
  end

  defp handle_result(result, callback, %{module: module}) do
    raise ArgumentError, """
    #{inspect(module)}.#{callback} returned an invalid value. Expected one of:

        {:ok, state}
        {:push, {:text | :binary, iodata}, state}
        {:reply, :ok | :error, {:text | :binary, iodata}, state}
        {:stop, reason, state}

    got #{inspect(result)}
    """
  end

  # A closed connection is not an error here: its {:fenix_closed, _} follows.
  defp push(transport, opcode, message) do
    data = IO.iodata_to_binary(message)

    case Native.transport_push(transport, opcode, data) do
      :dirty -> Native.transport_push_dirty(transport, opcode, data)
      result -> result
    end
    |> Native.await_pace()
  end
end
