defmodule Chat.MixProject do
  use Mix.Project

  # A chat demo that uses Fenix exactly as an application would: as a dependency.
  def project do
    [
      app: :chat,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: true,
      deps: [{:fenix, path: "../.."}]
    ]
  end

  def application do
    [mod: {Chat.Application, []}, extra_applications: [:logger]]
  end
end
