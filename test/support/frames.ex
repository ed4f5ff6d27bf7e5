defmodule Fenix.Test.Frames do
  @moduledoc false
  # Channel frames as literal JSON text, for either serializer. `payload` is JSON text;
  # a ref is nil, a string, an integer, or `{:json, text}` for any other JSON value.

  @doc "A client message."
  def client(:v2, join_ref, ref, topic, event, payload),
    do: ~s([#{j(join_ref)},#{j(ref)},"#{topic}","#{event}",#{payload}])

  def client(:v1, join_ref, ref, topic, event, payload),
    do: ~s({"topic":"#{topic}","event":"#{event}","payload":#{payload},"ref":#{j(ref)},"join_ref":#{j(join_ref)}})

  @doc "A server message, as `{:text, frame}`."
  def server(:v2, join_ref, ref, topic, event, payload),
    do: {:text, ~s([#{j(join_ref)},#{j(ref)},"#{topic}","#{event}",#{payload}])}

  def server(:v1, _join_ref, ref, topic, event, payload),
    do: {:text, ~s({"event":"#{event}","payload":#{payload},"ref":#{j(ref)},"topic":"#{topic}"})}

  @doc "A phx_reply."
  def reply(vsn, join_ref, ref, topic, status, response),
    do: server(vsn, join_ref, ref, topic, "phx_reply", ~s({"response":#{response},"status":"#{status}"}))

  @doc "The vsn query value of a serializer."
  def vsn(:v1), do: "1.0.0"
  def vsn(:v2), do: "2.0.0"

  defp j(nil), do: "null"
  defp j(n) when is_integer(n), do: Integer.to_string(n)
  defp j({:json, text}), do: text
  defp j(s) when is_binary(s), do: ~s("#{s}")
end
