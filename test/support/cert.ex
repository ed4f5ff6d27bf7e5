defmodule Fenix.Test.Cert do
  @moduledoc false
  # A certificate for the TLS tests, made with OTP's own `:public_key` (no openssl):
  # a test root CA and a server certificate for `localhost` and 127.0.0.1 signed by
  # it, both RSA 2048 with SHA-256. `generate!/1` writes, in `dir`:
  #
  #   cert.pem  the server's certificate (the endpoint's certfile)
  #   key.pem   its private key, PKCS#1 (the endpoint's keyfile)
  #   ca.pem    the root a client trusts (NODE_EXTRA_CA_CERTS, :ssl's cacertfile)

  @subject_alt_names {:Extension, {2, 5, 29, 17}, false, [dNSName: ~c"localhost", iPAddress: <<127, 0, 0, 1>>]}
  # RSA: pkix_test_data writes EC signatures with parameters that RFC 5758 leaves
  # out, which webpki (the load generator's rustls) refuses. SHA-256: OpenSSL (Node)
  # refuses the SHA-1 it may pick.
  @key [key: {:rsa, 2048, 65537}, digest: :sha256]

  @doc "Writes a fresh certificate, key and CA into `dir`; returns their paths."
  def generate!(dir) do
    chain = %{root: @key, intermediates: [], peer: [{:extensions, [@subject_alt_names]} | @key]}
    # The client chain is required by the call and not used: clients present no certificate.
    data = :public_key.pkix_test_data(%{server_chain: chain, client_chain: %{root: @key, peer: @key}})
    server = data.server_config
    {key_type, key} = server[:key]
    File.mkdir_p!(dir)

    paths = %{certfile: Path.join(dir, "cert.pem"), keyfile: Path.join(dir, "key.pem"), cacertfile: Path.join(dir, "ca.pem")}
    File.write!(paths.certfile, pem([{:Certificate, server[:cert]}]))
    File.write!(paths.keyfile, pem([{key_type, key}]))
    File.write!(paths.cacertfile, pem(Enum.map(data.client_config[:cacerts], &{:Certificate, &1})))
    paths
  end

  defp pem(entries), do: :public_key.pem_encode(for {type, der} <- entries, do: {type, der, :not_encrypted})
end
