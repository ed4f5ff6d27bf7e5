defmodule Fenix.Test.SupervisedEndpoint do
  @moduledoc false
  # An endpoint of its own for the tests that kill or stop parts of an endpoint's tree
  # (they cannot touch Fenix.TestEndpoint, which the async tests share). Each test
  # starts it with port 0.
  use Fenix.Endpoint, otp_app: :fenix

  socket "/socket", Fenix.Test.SupervisedSocket
  # Drained one connection at a time at shutdown.
  socket "/drained", Fenix.Test.SupervisedSocket, drainer: [batch_size: 1, batch_interval: 30, shutdown: 5_000]
  socket "/undrained", Fenix.Test.SupervisedSocket, drainer: false
  socket "/transport", Fenix.TestTransport
end

defmodule Fenix.Test.SupervisedSocket do
  @moduledoc false
  # Fenix.TestSocket's channels (they report to the test process), plus routes whose
  # channel process cannot be started.
  use Fenix.Socket

  channel "test:*", Fenix.TestChannel
  channel "unstartable", Fenix.Test.UnstartableChannel
  # A module that is no channel at all: it has no child_spec/1.
  channel "not_a_channel", URI

  @impl true
  def connect(params, socket, _info) do
    test_pid = params |> Map.fetch!("test_pid") |> String.to_charlist() |> :erlang.list_to_pid()
    {:ok, assign(socket, test_pid: test_pid, user_id: nil)}
  end
end

defmodule Fenix.Test.UnstartableChannel do
  @moduledoc false
  # A channel whose process refuses to start, as one whose start_link fails would.
  def child_spec(arg), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [arg]}, restart: :temporary}
  def start_link(_arg), do: {:error, :refused_on_purpose}
end

defmodule Fenix.Test.Supervised do
  @moduledoc false
  # Helpers for the tests of Fenix.Test.SupervisedEndpoint's tree.

  import ExUnit.Assertions
  import Fenix.Test.Client, only: [eventually: 1]

  alias Fenix.Test.{SupervisedEndpoint, WSClient}

  @doc "The endpoint's child `id` (:registration, :channels or :dispatcher), or nil."
  def child(id) when id in [:channels, :dispatcher], do: child_of(child(:engine), id)
  def child(id), do: child_of(Process.whereis(SupervisedEndpoint), id)

  defp child_of(nil, _id), do: nil

  defp child_of(supervisor, id) do
    Enum.find_value(Supervisor.which_children(supervisor), fn
      {^id, pid, _, _} when is_pid(pid) -> pid
      _ -> nil
    end)
  end

  @doc "Kills `pid` and waits until it is gone."
  def kill(pid) do
    ref = Process.monitor(pid)
    Process.exit(pid, :kill)
    assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
  end

  @doc "Waits until the endpoint has a dispatcher other than `old`, that is, one that has bound its port."
  def await_dispatcher_other_than(old) do
    assert eventually(fn -> child(:dispatcher) not in [nil, old] end)
    child(:dispatcher)
  end

  @doc "Connects to `port` as the calling test process, with serializer 2.0.0."
  def connect!(port, path \\ "/socket") do
    query = URI.encode_query(%{"vsn" => "2.0.0", "test_pid" => to_string(:erlang.pid_to_list(self()))})
    {:ok, client, _headers} = WSClient.connect(port, "#{path}/websocket?#{query}")
    client
  end

end
