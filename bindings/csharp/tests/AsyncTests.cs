// NUnit tests of the non-blocking API through the C# binding (run by run_tests.sh): tickets give
// the blocking calls' tokens; a session with work in flight throws KvStatus.Busy (deterministic: a
// completion callback holds kvulkan's worker); a cancelled prefill ends Cancelled and the session
// continues exactly like an uncancelled one.
using System;
using System.Linq;
using System.Threading;
using Kvulkan;
using Kvulkan.Interop;
using NUnit.Framework;

namespace Kvulkan.Tests
{
    [TestFixture]
    public class AsyncTests
    {
        Runtime _rt;
        Model _model;
        int[] _prompt;
        int[] _greedy;

        [TestFixtureSetUp]
        public void SetUp()
        {
            try
            {
                _rt = new Runtime(new RuntimeOptions { Validation = true });
            }
            catch (KvException e)
            {
                if (e.Status != KvStatus.Unsupported)
                    throw;
                _rt = new Runtime();
            }
            _model = _rt.LoadModel(Data.Stories);
            _prompt = Data.RefIds("prompt_ids");
            _greedy = Data.RefIds("generated_ids");
        }

        [TestFixtureTearDown]
        public void TearDown()
        {
            if (_model != null)
                _model.Dispose();
            if (_rt != null)
            {
                ulong count = _rt.ValidationMessageCount;
                _rt.Dispose();
                Assert.AreEqual(0UL, count, "validation messages");
            }
        }

        Session NewSession(uint nBatch = 0)
        {
            return _model.CreateSession(new SessionOptions { NCtx = 128, NBatch = nBatch });
        }

        static KvStatus PollUntilDone(Ticket t)
        {
            for (;;)
            {
                KvStatus st = t.Poll();
                if (st != KvStatus.NotReady)
                    return st;
                Thread.Sleep(1);
            }
        }

        [Test]
        public void SubmittedPrefillAndDecodeGiveTheBlockingTokens()
        {
            const int n = 16;
            using (var a = NewSession())
            using (var b = NewSession())
            {
                a.Prefill(_prompt);
                int[] want = a.Generate(n).ToArray();
                Assert.AreEqual(_greedy.Take(n).ToArray(), want);

                using (var t = b.SubmitPrefill((int[])_prompt.Clone()))
                {
                    Assert.AreEqual(KvStatus.Ok, t.Wait());
                    Assert.AreEqual(KvStatus.Ok, t.Poll());
                    Assert.IsTrue(t.IsDone);
                    int[] none;
                    KvStatus[] noStatus;
                    t.Results(out none, out noStatus);
                    Assert.AreEqual(0, none.Length);
                    int tok;
                    Assert.Throws<InvalidOperationException>(() => t.GetToken(out tok));
                }
                var got = new int[n];
                for (int i = 0; i < n; i++)
                {
                    using (var t = b.SubmitDecode())
                    {
                        Assert.AreEqual(KvStatus.Ok, PollUntilDone(t));
                        Assert.IsTrue(t.GetToken(out got[i]));
                    }
                }
                Assert.AreEqual(want, got);
                Assert.AreEqual(a.NTokens, b.NTokens);

                // A batch ticket equals DecodeBatch on forks of the same sessions.
                using (var c = a.Fork())
                using (var d = b.Fork())
                {
                    var wantTokens = new int[2];
                    var wantStatus = new KvStatus[2];
                    Session.DecodeBatch(new[] { a, b }, wantTokens, wantStatus);
                    using (var t = Session.SubmitDecodeBatch(new[] { c, d }))
                    {
                        Assert.AreEqual(KvStatus.Ok, t.Wait(TimeSpan.FromSeconds(60)));
                        int[] tokens;
                        KvStatus[] statuses;
                        t.Results(out tokens, out statuses);
                        Assert.AreEqual(wantTokens, tokens);
                        Assert.AreEqual(wantStatus, statuses);
                    }
                }
            }
        }

        [Test]
        public void BusySessionThrowsAndCallbacksRunOnTheWorker()
        {
            using (var x = NewSession())
            using (var y = NewSession())
            using (var want = NewSession())
            {
                x.Prefill(_prompt);
                y.Prefill(_prompt);
                want.Prefill(_prompt);
                int wantToken;
                Assert.IsTrue(want.DecodeStep(out wantToken));

                // Ticket a's callback holds the worker, so ticket b (queued behind it) keeps y in use.
                var entered = new ManualResetEvent(false);
                var release = new ManualResetEvent(false);
                Thread callbackThread = null;
                Ticket seen = null;
                KvStatus seenStatus = KvStatus.Internal;
                int seenToken = -2;
                Ticket a = x.SubmitDecode((t, status) =>
                {
                    callbackThread = Thread.CurrentThread;
                    seen = t;
                    seenStatus = status;
                    t.GetToken(out seenToken);  // results are readable in the callback
                    entered.Set();
                    release.WaitOne();
                });
                Ticket b = y.SubmitDecode();
                try
                {
                    Assert.IsTrue(entered.WaitOne(TimeSpan.FromSeconds(60)));
                    Assert.AreNotSame(Thread.CurrentThread, callbackThread);
                    Assert.AreSame(a, seen);
                    Assert.AreEqual(KvStatus.Ok, seenStatus);
                    Assert.AreEqual(wantToken, seenToken);
                    Assert.AreEqual(KvStatus.Ok, a.Poll());
                    x.Stats();  // x is free again while its callback runs

                    Assert.AreEqual(KvStatus.NotReady, b.Poll());
                    Assert.IsFalse(b.IsDone);
                    int tok;
                    var e = Assert.Throws<KvException>(() => y.DecodeStep(out tok));
                    Assert.AreEqual(KvStatus.Busy, e.Status);
                    Assert.AreEqual("KV_ERR_BUSY", e.StatusName);
                    Assert.AreEqual(KvStatus.Busy, Assert.Throws<KvException>(() => y.SubmitDecode()).Status);
                    Assert.AreEqual(KvStatus.Busy, Assert.Throws<KvException>(() => y.Stats()).Status);
                    Assert.AreEqual(KvStatus.Busy, Assert.Throws<KvException>(() => y.SubmitPrefill(new[] { 1 })).Status);
                    // A batch gives the busy session its own status and runs the free one.
                    var st = new KvStatus[2];
                    Session.DecodeBatch(new[] { x, y }, new int[2], st);
                    Assert.AreEqual(new[] { KvStatus.Ok, KvStatus.Busy }, st);
                    Assert.AreEqual(KvStatus.NotReady, b.Wait(TimeSpan.FromMilliseconds(5)));
                }
                finally
                {
                    release.Set();
                }
                Assert.AreEqual(KvStatus.Ok, b.Wait());
                int bToken;
                Assert.IsTrue(b.GetToken(out bToken));
                Assert.AreEqual(wantToken, bToken);
                a.Dispose();
                b.Dispose();
                a.Dispose();  // idempotent
                Assert.Throws<ObjectDisposedException>(() => a.Poll());
                // y took exactly one step (the refused calls changed nothing).
                Assert.AreEqual(_prompt.Length + 1, y.NTokens);
                int w, g;
                want.DecodeStep(out w);
                y.DecodeStep(out g);
                Assert.AreEqual(w, g);

                // The work's own error is the ticket's status; a submit's error throws and gives no ticket.
                using (var fresh = NewSession())
                {
                    using (var t = fresh.SubmitDecode())
                        Assert.AreEqual(KvStatus.BadState, Assert.Throws<KvException>(() => t.Wait()).Status);
                    Assert.AreEqual(KvStatus.InvalidArgument,
                                    Assert.Throws<KvException>(() => fresh.SubmitPrefill(new int[0])).Status);
                }
                IntPtr none;
                Assert.AreEqual((int)KvStatus.InvalidArgument,
                                Native.kv_submit_decode(IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, out none));
                Assert.AreEqual((int)KvStatus.InvalidArgument, Native.kv_ticket_poll(IntPtr.Zero));

                // A callback may dispose its own ticket.
                var disposed = new ManualResetEvent(false);
                x.SubmitDecode((t, status) => { t.Dispose(); disposed.Set(); });
                Assert.IsTrue(disposed.WaitOne(TimeSpan.FromSeconds(60)));
                // A disposed session's native object waits for its ticket.
                var s = NewSession();
                var p = s.SubmitPrefill(_prompt);
                s.Dispose();
                Assert.AreEqual(KvStatus.Ok, p.Wait());
                p.Dispose();
            }
        }

        [Test]
        public void CancelledPrefillStopsAtAChunkAndTheSessionContinues()
        {
            // A prompt of 4 chunks of 16: the reference prompt's tokens, repeated.
            const int len = 64;
            const uint nBatch = 16;
            var prompt = new int[len];
            prompt[0] = _prompt[0];
            for (int i = 1; i < len; i++)
                prompt[i] = _prompt[1 + (i - 1) % (_prompt.Length - 1)];
            // The uncancelled run on a model of its own: no page of it is shared with the runs below.
            using (var other = _rt.LoadModel(Data.Stories))
            using (var whole = other.CreateSession(new SessionOptions { NCtx = 128, NBatch = nBatch }))
            using (var s = NewSession(nBatch))
            using (var holder = NewSession(nBatch))
            {
                Assert.AreEqual(KvStatus.Ok, whole.Prefill(prompt));
                float[] wantLogits = whole.Logits();
                int[] want = whole.Generate(4).ToArray();

                // A callback holds the worker, so the prefill queued behind it starts with the cancel
                // request already made: it stops after its first chunk, deterministically.
                holder.Prefill(new[] { _prompt[0] });
                var release = new ManualResetEvent(false);
                KvStatus st;
                using (var hold = holder.SubmitDecode((t, status) => release.WaitOne()))
                using (var t = s.SubmitPrefill(prompt))
                {
                    s.Cancel();
                    release.Set();
                    st = t.Wait();
                    Assert.AreEqual(KvStatus.Ok, hold.Wait());
                }
                Assert.AreEqual(KvStatus.Cancelled, st);
                var stats = s.Stats();
                Assert.AreEqual(nBatch, stats.NTokens);
                Assert.AreEqual(nBatch, stats.LastPrefillTokens);
                Assert.AreEqual(KvStatus.Ok, s.Prefill(prompt.Skip((int)nBatch).ToArray()));
                Assert.AreEqual(wantLogits, s.Logits());
                Assert.AreEqual(want, s.Generate(4).ToArray());
                // A cancel with nothing running is a no-op: the next call is not affected.
                s.Reset();
                s.Cancel();
                Assert.AreEqual(KvStatus.Ok, s.Prefill(prompt));
                Assert.AreEqual(len, s.NTokens);
            }
        }
    }
}
