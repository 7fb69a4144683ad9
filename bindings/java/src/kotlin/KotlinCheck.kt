// The Java binding used from Kotlin unchanged (run by the opt-in ctest bindings/java_from_kotlin,
// see bindings/java/README.md): `use {}`, SAM-converted listeners, KvException. Exits non-zero
// when a check fails.
import dev.kvulkan.KvException
import dev.kvulkan.Native
import dev.kvulkan.Runtime
import dev.kvulkan.RuntimeDesc
import dev.kvulkan.Session
import dev.kvulkan.SessionDesc

fun main(args: Array<String>) {
    val logs = mutableListOf<String>()
    Runtime(RuntimeDesc().logListener { level, msg -> synchronized(logs) { logs.add("$level $msg") } }).use { rt ->
        rt.loadModel(args[0]).use { model ->
            val prompt = model.tokenize("Once upon a time")
            val streamed = mutableListOf<Int>()
            val text = StringBuilder()
            val tokens = model.newSession(SessionDesc().nCtx(128)).use { s ->
                s.prefill(prompt)
                s.generate(16) { token, piece -> streamed.add(token); text.append(piece); true }
            }
            val plain = Session(model).use { s ->
                s.prefill(prompt)
                IntArray(16) { s.decodeStep() }
            }
            check(tokens.contentEquals(plain)) { "generate ${tokens.toList()} != decodeStep ${plain.toList()}" }
            check(streamed == tokens.toList())
            check(text.startsWith(", there was a little girl")) { "text: $text" }
            val e = try {
                rt.loadModel("/no/such/model.gguf")
                null
            } catch (e: KvException) {
                e
            }
            check(e != null && e.status() == Native.KV_ERR_IO && e.libraryMessage().contains("/no/such/model.gguf"))
        }
    }
    check(logs.isNotEmpty())
    println("kotlin: ok")
}
