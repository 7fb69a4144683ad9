// NOT Unity: the few UnityEngine declarations the package sample uses, so that run_tests.sh can
// check that the sample compiles against this binding's API. It runs nothing; Unity itself is not
// available in this repository's CI.
using System;

namespace UnityEngine
{
    public class Object { }
    public class Component : Object { }
    public class Behaviour : Component { }
    public class MonoBehaviour : Behaviour { }

    public static class Debug
    {
        public static void Log(object message) { }
        public static void LogError(object message) { }
    }

    public static class Application
    {
        public static string streamingAssetsPath { get { return ""; } }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }

    [AttributeUsage(AttributeTargets.Field)]
    public class TextAreaAttribute : Attribute { public TextAreaAttribute(int minLines, int maxLines) { } }
}
