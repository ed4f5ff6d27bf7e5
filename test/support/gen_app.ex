# The channel side of an app as `mix phx.new` and `mix phx.gen.channel Room` generate
# it, with `Phoenix` renamed `Fenix` and nothing else changed (the web module keeps to
# what channels use): test/fenix/gen_app/room_channel_test.exs is the generated test.

defmodule GenAppWeb do
  @moduledoc false

  def channel do
    quote do
      use Fenix.Channel
    end
  end

  defmacro __using__(which) when is_atom(which) do
    apply(__MODULE__, which, [])
  end
end

defmodule GenAppWeb.Endpoint do
  @moduledoc false
  use Fenix.Endpoint, otp_app: :fenix

  socket "/socket", GenAppWeb.UserSocket,
    websocket: true,
    longpoll: false
end

defmodule GenAppWeb.UserSocket do
  @moduledoc false
  use Fenix.Socket

  channel "room:*", GenAppWeb.RoomChannel

  @impl true
  def connect(_params, socket, _connect_info) do
    {:ok, socket}
  end

  @impl true
  def id(_socket), do: nil
end

defmodule GenAppWeb.RoomChannel do
  @moduledoc false
  use GenAppWeb, :channel

  @impl true
  def join("room:lobby", payload, socket) do
    if authorized?(payload) do
      {:ok, socket}
    else
      {:error, %{reason: "unauthorized"}}
    end
  end

  # Channels can be used in a request/response fashion
  # by sending replies to requests from the client
  @impl true
  def handle_in("ping", payload, socket) do
    {:reply, {:ok, payload}, socket}
  end

  # It is also common to receive messages from the client and
  # broadcast to everyone in the current topic (room:lobby).
  @impl true
  def handle_in("shout", payload, socket) do
    broadcast socket, "shout", payload
    {:noreply, socket}
  end

  # Add authorization logic here as required.
  defp authorized?(_payload) do
    true
  end
end

defmodule GenAppWeb.ChannelCase do
  @moduledoc """
  This module defines the test case to be used by
  channel tests.

  Such tests rely on `Fenix.ChannelTest` and also
  import other functionality to make it easier
  to build common data structures and query the data layer.

  Finally, if the test case interacts with the database,
  we enable the SQL sandbox, so changes done to the database
  are reverted at the end of every test. If you are using
  PostgreSQL, you can even run database tests asynchronously
  by setting `use GenAppWeb.ChannelCase, async: true`, although
  this option is not recommended for other databases.
  """

  use ExUnit.CaseTemplate

  using do
    quote do
      # Import conveniences for testing with channels
      import Fenix.ChannelTest
      import GenAppWeb.ChannelCase

      # The default endpoint for testing
      @endpoint GenAppWeb.Endpoint
    end
  end

  setup _context do
    :ok
  end
end
