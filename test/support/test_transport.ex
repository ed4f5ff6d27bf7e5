defmodule Fenix.TestTransport do
  @moduledoc false
  # The Fenix.Socket.Transport the ExUnit tests run against. It reports each callback
  # to the test process whose pid is in the connect params (`test_pid`), and answers
  # text commands with each return shape; binary messages are echoed.
  @behaviour Fenix.Socket.Transport

  # Started once by each endpoint that mounts it: it keeps the options child_spec/1
  # was given, under a name of that endpoint's (options_name/1).
  @impl true
  def child_spec(opts) do
    %{id: __MODULE__, start: {Agent, :start_link, [fn -> opts end, [name: options_name(opts[:endpoint])]]}}
  end

  def options_name(endpoint), do: Module.concat(__MODULE__, endpoint)

  @impl true
  def connect(%{params: %{"deny" => "error"}}), do: {:error, :denied}
  def connect(%{params: %{"deny" => "plain"}}), do: :error
  def connect(%{params: %{"deny" => "raise"}}), do: raise("connect crashed on purpose")
  def connect(%{params: %{"deny" => "bad"}}), do: :what

  def connect(%{params: params} = info) do
    test_pid = params |> Map.fetch!("test_pid") |> String.to_charlist() |> :erlang.list_to_pid()
    send(test_pid, {:transport_connect, info, self()})
    {:ok, %{test_pid: test_pid, handled: 0}}
  end

  @impl true
  def init(state) do
    send(state.test_pid, {:transport_init, self()})
    {:ok, state}
  end

  @impl true
  def handle_in({"ok", opcode: :text}, state), do: {:ok, handled(state)}
  def handle_in({"count", opcode: :text}, state), do: {:reply, :ok, {:text, "#{state.handled}"}, state}
  def handle_in({"reply", opcode: :text}, state), do: {:reply, :ok, {:text, "replied"}, handled(state)}
  def handle_in({"reply_error", opcode: :text}, state), do: {:reply, :error, {:binary, <<1, 2>>}, handled(state)}
  def handle_in({"push_iodata", opcode: :text}, state), do: {:push, {:text, ["io", [?d, "ata"]]}, handled(state)}
  def handle_in({"stop", opcode: :text}, state), do: {:stop, :normal, state}
  def handle_in({"stop_shutdown", opcode: :text}, state), do: {:stop, {:shutdown, :bye}, state}
  def handle_in({"stop_abnormal", opcode: :text}, state), do: {:stop, :oops, state}
  def handle_in({"raise", opcode: :text}, _state), do: raise("handle_in crashed on purpose")
  def handle_in({"bad_return", opcode: :text}, _state), do: :what
  def handle_in({"bad_opcode", opcode: :text}, state), do: {:push, {:ping, "x"}, state}

  # Waits for the test's :release before going on: the connection's credit runs out.
  def handle_in({"block", opcode: :text}, state) do
    send(state.test_pid, {:blocked, self()})

    receive do
      :release -> {:ok, state}
    end
  end

  def handle_in({text, opcode: :text}, state), do: {:reply, :ok, {:text, "echo:" <> text}, handled(state)}
  def handle_in({data, opcode: :binary}, state), do: {:push, {:binary, data}, handled(state)}

  @impl true
  def handle_control({payload, opcode: opcode}, state) do
    send(state.test_pid, {:transport_control, opcode, payload})
    {:ok, state}
  end

  @impl true
  def handle_info({:push, frame}, state), do: {:push, frame, state}
  def handle_info({:stop, reason}, state), do: {:stop, reason, state}

  def handle_info(message, state) do
    send(state.test_pid, {:transport_info, message})
    {:ok, state}
  end

  @impl true
  def terminate(reason, state), do: send(state.test_pid, {:transport_terminate, reason})

  defp handled(state), do: %{state | handled: state.handled + 1}
end
