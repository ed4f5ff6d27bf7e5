defmodule Mix.Tasks.Compile.FenixNif do
  @moduledoc false
  # Builds the Rust engine with cargo and copies it into priv/native. hex.pm (and so the
  # rustler mix package) is out of reach, so this small compiler replaces it.
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    root = Path.expand(__DIR__)
    profile = System.get_env("FENIX_CARGO_PROFILE", "release")

    {output, status} =
      System.cmd("cargo", ["build", "--profile", profile, "-p", "fenix_nif"],
        cd: root,
        stderr_to_stdout: true
      )

    if status != 0 do
      Mix.shell().error(output)
      Mix.raise("cargo build of the Fenix engine failed (exit #{status})")
    end

    target_dir = System.get_env("CARGO_TARGET_DIR", Path.join(root, "target"))
    built = Path.join([target_dir, profile, "libfenix_nif.so"])
    dest_dir = Path.join(root, "priv/native")
    dest = Path.join(dest_dir, "libfenix_nif.so")
    File.mkdir_p!(dest_dir)

    if stale?(built, dest) do
      # Remove first: overwriting a .so that a running VM has mapped would corrupt it.
      File.rm(dest)
      File.cp!(built, dest)
    end

    {:ok, []}
  end

  defp stale?(built, dest) do
    case {File.stat(built, time: :posix), File.stat(dest, time: :posix)} do
      {{:ok, b}, {:ok, d}} -> b.mtime > d.mtime or b.size != d.size
      _ -> true
    end
  end
end

defmodule Fenix.MixProject do
  use Mix.Project

  def project do
    [
      app: :fenix,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:fenix_nif] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      preferred_cli_env: ["fenix.conformance": :test],
      deps: []
    ]
  end

  def application do
    [mod: {Fenix.Application, []}, extra_applications: [:logger, :crypto] ++ test_applications(Mix.env())]
  end

  # The TLS tests' client (:ssl) and certificates (:public_key, test/support/cert.ex).
  defp test_applications(:test), do: [:public_key, :ssl]
  defp test_applications(_env), do: []

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
