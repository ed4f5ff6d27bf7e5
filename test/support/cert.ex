defmodule Fenix.Test.Cert do
  @moduledoc false
  # A certificate for the TLS tests, made with OTP's own `:public_key` (no openssl):
  # self-signed, for `localhost` and 127.0.0.1, ECDSA P-256 with SHA-256 (as most
  # certificates served today; an RSA 2048 handshake costs the server several times
  # more). `generate!/1` writes, in `dir`:
  #
  #   cert.pem  the certificate (the endpoint's certfile)
  #   key.pem   its private key, SEC1 (the endpoint's keyfile)
  #   ca.pem    what a client trusts: the certificate itself (NODE_EXTRA_CA_CERTS,
  #             :ssl's cacertfile, the load generator's --ca)

  @subject_alt_names {:Extension, {2, 5, 29, 17}, false, [dNSName: ~c"localhost", iPAddress: <<127, 0, 0, 1>>]}
  @key [key: {:namedCurve, :secp256r1}, digest: :sha256]

  # Fields of the OTPTBSCertificate record.
  @signature 3
  @issuer 4
  @subject 6

  @doc "Writes a fresh certificate, key and CA into `dir`; returns their paths."
  def generate!(dir) do
    # pkix_test_data makes a chain (its root's key is not returned) whose EC signature
    # algorithms carry parameters RFC 5758 leaves out, which webpki refuses: its peer
    # certificate is taken, made its own issuer, and signed again with its own key.
    chain = %{root: @key, intermediates: [], peer: [{:extensions, [@subject_alt_names]} | @key]}
    data = :public_key.pkix_test_data(%{server_chain: chain, client_chain: %{root: @key, peer: @key}})
    {:ECPrivateKey, key_der} = data.server_config[:key]
    tbs = elem(:public_key.pkix_decode_cert(data.server_config[:cert], :otp), 1)
    {:SignatureAlgorithm, algorithm, _parameters} = elem(tbs, @signature)
    tbs = tbs |> put_elem(@signature, {:SignatureAlgorithm, algorithm, :asn1_NOVALUE}) |> put_elem(@issuer, elem(tbs, @subject))
    cert = :public_key.pkix_sign(tbs, :public_key.der_decode(:ECPrivateKey, key_der))
    File.mkdir_p!(dir)

    paths = %{certfile: Path.join(dir, "cert.pem"), keyfile: Path.join(dir, "key.pem"), cacertfile: Path.join(dir, "ca.pem")}
    File.write!(paths.certfile, pem(:Certificate, cert))
    File.write!(paths.keyfile, pem(:ECPrivateKey, key_der))
    File.write!(paths.cacertfile, pem(:Certificate, cert))
    paths
  end

  defp pem(type, der), do: :public_key.pem_encode([{type, der, :not_encrypted}])
end
